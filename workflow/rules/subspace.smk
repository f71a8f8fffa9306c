# Stage 2 (the shared subspace), stage 3 (training inside it), transfer between DETs, and their tables.


rule decompose:
    input:
        vectors=expand(f"{VECTORS_DIR}/{{det}}.safetensors", det=det_names()),
        data=expand(f"{DATA_DIR}/task.json", task=subspace_train_tasks()),
    output:
        subspace=f"{SUBSPACE_DIR}/subspace.safetensors",
        points=report(
            f"{SUBSPACE_DIR}/points.csv",
            caption="../report/points.rst",
            category="Subspace",
            labels={"table": "each task's point per DET"},
        ),
        metrics=f"{SUBSPACE_DIR}/metrics.json",
    params:
        spec=decompose_spec,
        data=lambda wildcards, input: [f"{t}={os.path.dirname(p)}" for t, p in zip(subspace_train_tasks(), input.data)],
        vectors_dir=lambda wildcards, input: os.path.dirname(input.vectors[0]),
        out_dir=lambda wildcards, output: os.path.dirname(output.subspace),
        # Not an output: it must outlive a killed job so that the rerun resumes from it.
        checkpoint_dir=SUBSPACE_CHECKPOINTS,
    log:
        f"{LOGS_DIR}/decompose.log",
    benchmark:
        BENCHMARKS["decompose"]
    threads: rule_resource("decompose", "threads")
    resources:
        mem_mb=rule_resource("decompose", "mem_mb"),
        runtime=rule_resource("decompose", "runtime"),
        gpu=rule_resource("decompose", "gpu"),
    conda:
        "../../envs/deltaspace.yaml"
    shell:
        "python -m deltaspace decompose --spec {params.spec:q} --vectors-dir {params.vectors_dir:q} --data {params.data:q}"
        " --out-dir {params.out_dir:q} --checkpoint-dir {params.checkpoint_dir:q} --threads {threads} > {log:q} 2>&1"


rule subspace_train:
    input:
        subspace=f"{SUBSPACE_DIR}/subspace.safetensors",
        summary=f"{DATA_DIR}/task.json",
    output:
        result=f"{STAGE3_RUN}/result.json",
        vector=f"{STAGE3_RUN}/intrinsic.safetensors",
    params:
        spec=subspace_train_spec,
        data_dir=lambda wildcards, input: os.path.dirname(input.summary),
        out_dir=lambda wildcards, output: os.path.dirname(output.result),
    log:
        f"{LOGS_DIR}/subspace_train/{{task}}/{{det}}/seed{{seed}}.log",
    benchmark:
        BENCHMARKS["subspace_train"]
    threads: rule_resource("subspace_train", "threads")
    resources:
        mem_mb=rule_resource("subspace_train", "mem_mb"),
        runtime=rule_resource("subspace_train", "runtime"),
        gpu=rule_resource("subspace_train", "gpu"),
    conda:
        "../../envs/deltaspace.yaml"
    shell:
        "python -m deltaspace subspace-train --task {wildcards.task:q} --det {wildcards.det:q} --seed {wildcards.seed}"
        " --spec {params.spec:q} --subspace {input.subspace:q} --data-dir {params.data_dir:q}"
        " --out-dir {params.out_dir:q} --threads {threads} > {log:q} 2>&1"


rule transfer:
    input:
        subspace=f"{SUBSPACE_DIR}/subspace.safetensors",
        summary=f"{DATA_DIR}/task.json",
        results=lambda wildcards: [f"{run}/result.json" for run in stage3_runs(task=wildcards.task, seed=wildcards.seed)],
    output:
        TRANSFER_RUN,
    params:
        spec=transfer_spec,
        data_dir=lambda wildcards, input: os.path.dirname(input.summary),
        runs=lambda wildcards, input: [f"{d}={os.path.dirname(p)}" for d, p in zip(det_names(), input.results)],
    log:
        f"{LOGS_DIR}/transfer/{{task}}/seed{{seed}}.log",
    benchmark:
        BENCHMARKS["transfer"]
    threads: rule_resource("transfer", "threads")
    resources:
        mem_mb=rule_resource("transfer", "mem_mb"),
        runtime=rule_resource("transfer", "runtime"),
        gpu=rule_resource("transfer", "gpu"),
    conda:
        "../../envs/deltaspace.yaml"
    shell:
        "python -m deltaspace transfer --task {wildcards.task:q} --seed {wildcards.seed} --spec {params.spec:q}"
        " --subspace {input.subspace:q} --runs {params.runs:q} --data-dir {params.data_dir:q} --out {output:q}"
        " --threads {threads} > {log:q} 2>&1"


rule subspace_tables:
    input:
        stage1=f"{TABLES_DIR}/stage1.csv",
        results=[f"{run}/result.json" for run in stage3_runs()],
        transfers=transfer_runs(),
    output:
        relative=report(
            f"{TABLES_DIR}/relative_performance.csv",
            caption="../report/relative_performance.rst",
            category="Subspace",
            labels={"table": "relative performance"},
        ),
        relative_summary=f"{TABLES_DIR}/relative_performance.md",
        transfer=report(
            f"{TABLES_DIR}/transfer.csv",
            caption="../report/transfer.rst",
            category="Transfer",
            labels={"table": "transfer between DETs"},
        ),
        transfer_summary=f"{TABLES_DIR}/transfer.md",
    params:
        runs=lambda wildcards, input: [os.path.dirname(p) for p in input.results],
        roles=as_json(task_roles()),
    log:
        f"{LOGS_DIR}/subspace_tables.log",
    threads: rule_resource("subspace_tables", "threads")
    resources:
        mem_mb=rule_resource("subspace_tables", "mem_mb"),
        runtime=rule_resource("subspace_tables", "runtime"),
    conda:
        "../../envs/deltaspace.yaml"
    shell:
        "python -m deltaspace subspace-tables --runs {params.runs:q} --transfers {input.transfers:q}"
        " --stage1 {input.stage1:q} --roles {params.roles:q} --relative-out {output.relative:q}"
        " --relative-summary {output.relative_summary:q} --transfer-out {output.transfer:q}"
        " --transfer-summary {output.transfer_summary:q} > {log:q} 2>&1"
