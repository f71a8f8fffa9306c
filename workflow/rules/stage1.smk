# Stage 1: every DET trained alone on every task and seed; deltas collected per DET; one score table.


rule train_det:
    input:
        train=f"{DATA_DIR}/train.jsonl",
        dev=f"{DATA_DIR}/dev.jsonl",
        test=f"{DATA_DIR}/test.jsonl",
        summary=f"{DATA_DIR}/task.json",
    output:
        delta=f"{STAGE1_RUN}/delta.safetensors",
        metrics=f"{STAGE1_RUN}/metrics.json",
    params:
        spec=train_det_spec,
        data_dir=lambda wildcards, input: os.path.dirname(input.summary),
        out_dir=lambda wildcards, output: os.path.dirname(output.metrics),
        # Not an output: it must outlive a killed job so that the rerun resumes from it.
        checkpoint_dir=lambda wildcards: STAGE1_CHECKPOINTS.format(**wildcards),
    log:
        f"{LOGS_DIR}/train_det/{{task}}/{{det}}/seed{{seed}}.log",
    benchmark:
        BENCHMARKS["train_det"]
    threads: rule_resource("train_det", "threads")
    resources:
        mem_mb=rule_resource("train_det", "mem_mb"),
        runtime=rule_resource("train_det", "runtime"),
        gpu=rule_resource("train_det", "gpu"),
    conda:
        "../../envs/deltaspace.yaml"
    shell:
        "python -m deltaspace train-det --task {wildcards.task:q} --det {wildcards.det:q} --seed {wildcards.seed}"
        " --spec {params.spec:q} --data-dir {params.data_dir:q} --out-dir {params.out_dir:q}"
        " --checkpoint-dir {params.checkpoint_dir:q} --threads {threads} > {log:q} 2>&1"


rule collect_vectors:
    input:
        # Only what stage 2 learns from: adding an unseen task must not retrain the subspace.
        deltas=lambda wildcards: [
            f"{run}/delta.safetensors" for run in stage1_runs(wildcards.det, subspace_train_tasks())
        ],
    output:
        matrix=f"{VECTORS_DIR}/{{det}}.safetensors",
        index=report(
            f"{VECTORS_DIR}/{{det}}_index.csv",
            caption="../report/vector_index.rst",
            category="Original space",
            subcategory="Solution vectors",
            labels={"DET": "{det}", "table": "row index"},
        ),
    params:
        runs=lambda wildcards, input: [os.path.dirname(path) for path in input.deltas],
        out_dir=lambda wildcards, output: os.path.dirname(output.matrix),
    log:
        f"{LOGS_DIR}/collect_vectors/{{det}}.log",
    threads: rule_resource("collect_vectors", "threads")
    resources:
        mem_mb=rule_resource("collect_vectors", "mem_mb"),
        runtime=rule_resource("collect_vectors", "runtime"),
    conda:
        "../../envs/deltaspace.yaml"
    shell:
        "python -m deltaspace collect-vectors --det {wildcards.det:q} --runs {params.runs:q}"
        " --out-dir {params.out_dir:q} > {log:q} 2>&1"


rule stage1_table:
    input:
        metrics=lambda wildcards: [f"{run}/metrics.json" for run in stage1_runs()],
    output:
        table=report(
            f"{TABLES_DIR}/stage1.csv",
            caption="../report/stage1_table.rst",
            category="Original space",
            subcategory="Scores",
            labels={"table": "scores of every DET on every task"},
        ),
    params:
        runs=lambda wildcards, input: [os.path.dirname(path) for path in input.metrics],
    log:
        f"{LOGS_DIR}/stage1_table.log",
    threads: rule_resource("stage1_table", "threads")
    resources:
        mem_mb=rule_resource("stage1_table", "mem_mb"),
        runtime=rule_resource("stage1_table", "runtime"),
    conda:
        "../../envs/deltaspace.yaml"
    shell:
        "python -m deltaspace stage1-table --runs {params.runs:q} --out {output.table:q} > {log:q} 2>&1"
