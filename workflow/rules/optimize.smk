# optimize (stage 3): an intrinsic vector trained inside the subspace; transfer between DETs; their tables.


rule optimize:
    input:
        backbone=backbone_input,
        overlap=ancient(OVERLAP),
        **named(DECOMPOSITION, "decomposition_"),
        **named(DATA),
    output:
        **named(OPTIMIZE),
    params:
        spec=optimize_spec,
        decomposition=lambda wildcards, input: files_option(
            "decomposition", io_files(paths.Decomposition, input, "decomposition_")),
        data=lambda wildcards, input: files_option("data", io_files(paths.TaskData, input)),
        out=lambda wildcards, output: files_option("out", io_files(paths.OptimizeRun, output)),
    log:
        f"{LOGS}/optimize/{{task}}/{{det}}/seed{{seed}}.log",
    benchmark:
        BENCHMARK_FILES["optimize"]
    # Before the short artifact and export jobs, which fill idle cores; after landscape (its priority says why).
    priority: 1
    threads: rule_resource("optimize", "threads")
    resources:
        mem_mb=rule_resource("optimize", "mem_mb"),
        runtime=rule_resource("optimize", "runtime"),
        gpu=rule_resource("optimize", "gpu"),
    conda:
        "../../envs/deltaspace.yaml"
    shell:
        "python -m deltaspace optimize --task {wildcards.task:q} --det {wildcards.det:q} --seed {wildcards.seed}"
        " --spec {params.spec:q} {params.decomposition} {params.data} {params.out}"
        " --threads {threads} > {log:q} 2>&1"


rule transfer:
    input:
        backbone=backbone_input,
        subspace=DECOMPOSITION.subspace,
        **named(DATA),
        results=lambda wildcards: list(optimize_files_by_det(wildcards, "result").values()),
    output:
        scores=TRANSFER,
        predictions=TRANSFER_PREDICTIONS,
    params:
        spec=transfer_spec,
        data=lambda wildcards, input: files_option("data", io_files(paths.TaskData, input)),
        results=lambda wildcards: pairs_option("results", optimize_files_by_det(wildcards, "result")),
    log:
        f"{LOGS}/transfer/{{task}}/seed{{seed}}.log",
    benchmark:
        BENCHMARK_FILES["transfer"]
    # Before the short artifact and export jobs, which then run beside it instead of ahead of it.
    priority: 1
    threads: rule_resource("transfer", "threads")
    resources:
        mem_mb=rule_resource("transfer", "mem_mb"),
        runtime=rule_resource("transfer", "runtime"),
        gpu=rule_resource("transfer", "gpu"),
    conda:
        "../../envs/deltaspace.yaml"
    shell:
        "python -m deltaspace transfer --task {wildcards.task:q} --seed {wildcards.seed} --spec {params.spec:q}"
        " --subspace-path {input.subspace:q} {params.results} {params.data} --out {output.scores:q}"
        " --predictions-out {output.predictions:q}"
        " --threads {threads} > {log:q} 2>&1"


rule result_tables:
    input:
        original=ORIGINAL_TABLE,
        results=[run.result for run in optimize_runs()],
        transfers=transfer_runs(),
    output:
        relative=report(
            RESULT_TABLES.relative,
            caption="../report/relative_performance.rst",
            category="Optimize",
            labels={"table": "relative performance"},
        ),
        relative_summary=RESULT_TABLES.relative_summary,
        intervals=report(
            RESULT_TABLES.intervals,
            caption="../report/relative_intervals.rst",
            category="Optimize",
            labels={"table": "intervals of subspace minus each baseline"},
        ),
        transfer=report(
            RESULT_TABLES.transfer,
            caption="../report/transfer.rst",
            category="Transfer",
            labels={"table": "transfer between DETs"},
        ),
        transfer_summary=RESULT_TABLES.transfer_summary,
    params:
        roles=as_json(task_roles()),
        out=lambda wildcards, output: files_option("out", io_files(paths.ResultTables, output)),
    log:
        f"{LOGS}/result_tables.log",
    threads: rule_resource("result_tables", "threads")
    resources:
        mem_mb=rule_resource("result_tables", "mem_mb"),
        runtime=rule_resource("result_tables", "runtime"),
    conda:
        "../../envs/deltaspace.yaml"
    shell:
        "python -m deltaspace result_tables --results {input.results:q} --transfers {input.transfers:q}"
        " --original-csv {input.original:q} --roles {params.roles:q} {params.out} > {log:q} 2>&1"
