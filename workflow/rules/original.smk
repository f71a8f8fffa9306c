# original (stage 1): every DET trained alone on every task and seed; deltas collected per DET; one score table.


rule original:
    input:
        backbone=backbone_input,
        **named(DATA),
        # The leakage guard passed; ancient: rerunning it for a new task list retrains no finished job.
        overlap=ancient(OVERLAP),
    output:
        **named(ORIGINAL),
    params:
        spec=original_spec,
        data=lambda wildcards, input: files_option("data", io_files(paths.TaskData, input)),
        out=lambda wildcards, output: files_option("out", io_files(paths.OriginalRun, output)),
        # Not an output: it must outlive a killed job so that the rerun resumes from it.
        checkpoint=lambda wildcards: ORIGINAL_CHECKPOINT.format(**wildcards),
    log:
        f"{LOGS}/original/{{task}}/{{det}}/seed{{seed}}.log",
    benchmark:
        BENCHMARK_FILES["original"]
    threads: rule_resource("original", "threads")
    resources:
        mem_mb=rule_resource("original", "mem_mb"),
        runtime=rule_resource("original", "runtime"),
        gpu=rule_resource("original", "gpu"),
    conda:
        "../../envs/deltaspace.yaml"
    shell:
        "python -m deltaspace original --task {wildcards.task:q} --det {wildcards.det:q} --seed {wildcards.seed}"
        " --spec {params.spec:q} {params.data} {params.out} --checkpoint {params.checkpoint:q} --threads {threads}"
        " > {log:q} 2>&1"


rule collect_vectors:
    input:
        # Only what stage 2 learns from: adding an unseen task must not retrain the subspace.
        deltas=lambda wildcards: [run.delta for run in original_runs(wildcards.det, decompose_train_tasks())],
    output:
        matrix=VECTORS.matrix,
        index=report(
            VECTORS.index,
            caption="../report/vector_index.rst",
            category="Original",
            subcategory="Solution vectors",
            labels={"DET": "{det}", "table": "row index"},
        ),
    params:
        out=lambda wildcards, output: files_option("out", io_files(paths.Vectors, output)),
    log:
        f"{LOGS}/collect_vectors/{{det}}.log",
    threads: rule_resource("collect_vectors", "threads")
    resources:
        mem_mb=rule_resource("collect_vectors", "mem_mb"),
        runtime=rule_resource("collect_vectors", "runtime"),
    conda:
        "../../envs/deltaspace.yaml"
    shell:
        "python -m deltaspace collect_vectors --det {wildcards.det:q} --delta-files {input.deltas:q} {params.out}"
        " > {log:q} 2>&1"


rule original_table:
    input:
        metrics=lambda wildcards: [run.metrics for run in original_runs()],
    output:
        table=report(
            ORIGINAL_TABLE,
            caption="../report/original_table.rst",
            category="Original",
            subcategory="Scores",
            labels={"table": "scores of every DET on every task"},
        ),
    log:
        f"{LOGS}/original_table.log",
    threads: rule_resource("original_table", "threads")
    resources:
        mem_mb=rule_resource("original_table", "mem_mb"),
        runtime=rule_resource("original_table", "runtime"),
    conda:
        "../../envs/deltaspace.yaml"
    shell:
        "python -m deltaspace original_table --metrics-files {input.metrics:q} --out {output.table:q} > {log:q} 2>&1"
