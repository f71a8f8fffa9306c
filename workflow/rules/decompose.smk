# decompose (stage 2): the shared subspace, learned from every DET's stage-1 deltas of the training tasks.


rule decompose:
    input:
        backbone=backbone_input,
        # The leakage guard: a changed task list is checked before stage 2 starts (ancient: no rerun when it is).
        overlap=ancient(OVERLAP),
        vectors=expand(VECTORS.matrix, det=det_names()),
        data=lambda wildcards: [path for task in decompose_train_tasks() for path in DATA.formatted(task=task).paths()],
    output:
        subspace=DECOMPOSITION.subspace,
        svd_subspace=DECOMPOSITION.svd_subspace,
        points=report(
            DECOMPOSITION.points,
            caption="../report/points.rst",
            category="Decompose",
            labels={"table": "each task's point per DET"},
        ),
        metrics=DECOMPOSITION.metrics,
    params:
        spec=decompose_spec,
        vectors=lambda wildcards: pairs_option("vectors", {det: VECTORS.formatted(det=det).matrix for det in det_names()}),
        data=lambda wildcards: files_option("data", {task: DATA.formatted(task=task) for task in decompose_train_tasks()}),
        out=lambda wildcards, output: files_option("out", io_files(paths.Decomposition, output)),
        # Not an output: it must outlive a killed job so that the rerun resumes from it.
        checkpoint=DECOMPOSE_CHECKPOINT,
    log:
        f"{LOGS}/decompose.log",
    benchmark:
        BENCHMARK_FILES["decompose"]
    threads: rule_resource("decompose", "threads")
    resources:
        mem_mb=rule_resource("decompose", "mem_mb"),
        runtime=rule_resource("decompose", "runtime"),
        gpu=rule_resource("decompose", "gpu"),
    conda:
        "../../envs/deltaspace.yaml"
    shell:
        "python -m deltaspace decompose --spec {params.spec:q} {params.vectors} {params.data} {params.out}"
        " --checkpoint {params.checkpoint:q} --threads {threads} > {log:q} 2>&1"
