# Tasks: seeded, stratified train/dev/test splits of each configured task.


rule prepare_task:
    output:
        **named(DATA),
    params:
        spec=prepare_task_spec,
        out=lambda wildcards, output: files_option("out", io_files(paths.TaskData, output)),
    log:
        f"{LOGS}/prepare_task/{{task}}.log",
    threads: rule_resource("prepare_task", "threads")
    resources:
        mem_mb=rule_resource("prepare_task", "mem_mb"),
        runtime=rule_resource("prepare_task", "runtime"),
    conda:
        "../../envs/deltaspace.yaml"
    shell:
        "python -m deltaspace prepare_task --task {wildcards.task:q} --spec {params.spec:q} {params.out} > {log:q} 2>&1"
