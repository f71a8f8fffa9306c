# Export: the learned subspace as one reusable folder (tensors, metadata, model card), and every stage-3
# solution of a DET that PEFT implements as a standard PEFT adapter folder (deltaspace.export says which).

rule subspace_artifact:
    input:
        backbone=backbone_input,
        **named(DECOMPOSITION),
    output:
        subspace=ARTIFACT.subspace,
        points=ARTIFACT.points,
        card=report(
            ARTIFACT.card,
            caption="../report/export_subspace.rst",
            category="Decompose",
            labels={"file": "subspace artifact (model card)"},
        ),
    params:
        out=lambda wildcards, output: files_option("out", io_files(paths.Artifact, output)),
    log:
        f"{LOGS}/subspace_artifact.log",
    threads: rule_resource("subspace_artifact", "threads")
    resources:
        mem_mb=rule_resource("subspace_artifact", "mem_mb"),
        runtime=rule_resource("subspace_artifact", "runtime"),
    conda:
        "../../envs/deltaspace.yaml"
    shell:
        "python -m deltaspace subspace_artifact --subspace-path {input.subspace:q} --points-path {input.points:q}"
        " --metrics-path {input.metrics:q} {params.out} > {log:q} 2>&1"


rule export_peft:
    input:
        backbone=backbone_input,
        subspace=ARTIFACT.subspace,
        intrinsic=OPTIMIZE.intrinsic,
    output:
        **named(PEFT),
    params:
        out=lambda wildcards, output: files_option("out", io_files(paths.PeftAdapter, output)),
    log:
        f"{LOGS}/export_peft/{{task}}/{{det}}/seed{{seed}}.log",
    threads: rule_resource("export_peft", "threads")
    resources:
        mem_mb=rule_resource("export_peft", "mem_mb"),
        runtime=rule_resource("export_peft", "runtime"),
    conda:
        "../../envs/deltaspace.yaml"
    shell:
        "python -m deltaspace export_peft --intrinsic-path {input.intrinsic:q} --subspace {input.subspace:q}"
        " {params.out} --threads {threads} > {log:q} 2>&1"
