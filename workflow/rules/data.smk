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


# The leakage guard: every original job waits for it, so no training starts on a task list that leaks.
rule overlap:
    input:
        data=lambda wildcards: [path for task in guarded_tasks() for path in DATA.formatted(task=task).paths()],
    output:
        table=report(
            OVERLAP,
            caption="../report/overlap.rst",
            category="Data",
            labels={"table": "texts each unseen task shares with each train task"},
        ),
    params:
        data=lambda wildcards: files_option("data", {task: DATA.formatted(task=task) for task in guarded_tasks()}),
        train_tasks=lambda wildcards: as_json(decompose_train_tasks()),
        unseen_tasks=lambda wildcards: as_json(config["decompose"]["unseen_tasks"]),
        max_overlap=config["decompose"]["max_overlap"],
    log:
        f"{LOGS}/overlap.log",
    threads: rule_resource("overlap", "threads")
    resources:
        mem_mb=rule_resource("overlap", "mem_mb"),
        runtime=rule_resource("overlap", "runtime"),
    conda:
        "../../envs/deltaspace.yaml"
    shell:
        "python -m deltaspace overlap {params.data} --train-tasks {params.train_tasks:q}"
        " --unseen-tasks {params.unseen_tasks:q} --max-overlap {params.max_overlap} --out {output.table:q}"
        " > {log:q} 2>&1"
