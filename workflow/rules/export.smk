# Export: the learned subspace as one reusable folder (tensors, metadata, model card), and every stage-3
# solution of a DET that PEFT implements as a standard PEFT adapter folder (deltaspace.export says which).

rule subspace_artifact:
    input:
        subspace=f"{SUBSPACE_DIR}/subspace.safetensors",
        points=f"{SUBSPACE_DIR}/points.csv",
        metrics=f"{SUBSPACE_DIR}/metrics.json",
    output:
        subspace=f"{EXPORT_SUBSPACE}/subspace.safetensors",
        points=f"{EXPORT_SUBSPACE}/points.csv",
        card=report(
            f"{EXPORT_SUBSPACE}/README.md",
            caption="../report/export_subspace.rst",
            category="Subspace",
            labels={"file": "subspace artifact (model card)"},
        ),
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output.card),
    log:
        f"{LOGS_DIR}/subspace_artifact.log",
    threads: rule_resource("subspace_artifact", "threads")
    resources:
        mem_mb=rule_resource("subspace_artifact", "mem_mb"),
        runtime=rule_resource("subspace_artifact", "runtime"),
    conda:
        "../../envs/deltaspace.yaml"
    shell:
        "python -m deltaspace subspace-artifact --subspace {input.subspace:q} --points {input.points:q}"
        " --metrics {input.metrics:q} --out-dir {params.out_dir:q} > {log:q} 2>&1"


rule export_peft:
    input:
        subspace=f"{EXPORT_SUBSPACE}/subspace.safetensors",
        intrinsic=f"{STAGE3_RUN}/intrinsic.safetensors",
    output:
        config=f"{EXPORT_PEFT_RUN}/adapter_config.json",
        weights=f"{EXPORT_PEFT_RUN}/adapter_model.safetensors",
        provenance=f"{EXPORT_PEFT_RUN}/deltaspace.json",
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output.config),
    log:
        f"{LOGS_DIR}/export_peft/{{task}}/{{det}}/seed{{seed}}.log",
    threads: rule_resource("export_peft", "threads")
    resources:
        mem_mb=rule_resource("export_peft", "mem_mb"),
        runtime=rule_resource("export_peft", "runtime"),
    conda:
        "../../envs/deltaspace.yaml"
    shell:
        "python -m deltaspace export-peft --intrinsic {input.intrinsic:q} --subspace {input.subspace:q}"
        " --out-dir {params.out_dir:q} --threads {threads} > {log:q} 2>&1"
