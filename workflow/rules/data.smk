# Tasks: seeded, stratified train/dev/test splits of each configured task.


rule prepare_task:
    output:
        train=f"{DATA_DIR}/train.jsonl",
        dev=f"{DATA_DIR}/dev.jsonl",
        test=f"{DATA_DIR}/test.jsonl",
        summary=f"{DATA_DIR}/task.json",
    params:
        spec=prepare_task_spec,
        out_dir=lambda wildcards, output: os.path.dirname(output.summary),
    log:
        f"{LOGS_DIR}/prepare_task/{{task}}.log",
    threads: rule_resource("prepare_task", "threads")
    resources:
        mem_mb=rule_resource("prepare_task", "mem_mb"),
        runtime=rule_resource("prepare_task", "runtime"),
    conda:
        "../../envs/deltaspace.yaml"
    shell:
        "python -m deltaspace prepare-task --task {wildcards.task:q} --spec {params.spec:q}"
        " --out-dir {params.out_dir:q} > {log:q} 2>&1"
