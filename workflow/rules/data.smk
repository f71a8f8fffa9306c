# Tasks: seeded, stratified train/dev/test splits of each configured task.


rule prepare_task:
    input:
        # A file task's data: a changed file reruns its preparation, and a planted task's file is made first.
        task_file=lambda wildcards: task_file_input(wildcards.task),
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


# The positive control (config/control.yaml): the planted tasks' files, all from one basis, in one job.
if planted_tasks():

    rule plant_tasks:
        input:
            backbone=backbone_input,
        output:
            files=planted_files(),
            info=PLANTED_INFO,
            basis=PLANTED_BASIS,
        params:
            spec=plant_spec,
            out=lambda wildcards, output: pairs_option("out", dict(zip(planted_tasks(), output.files))),
        log:
            f"{LOGS}/plant_tasks.log",
        threads: rule_resource("plant_tasks", "threads")
        resources:
            mem_mb=rule_resource("plant_tasks", "mem_mb"),
            runtime=rule_resource("plant_tasks", "runtime"),
            gpu=rule_resource("plant_tasks", "gpu"),
        conda:
            "../../envs/deltaspace.yaml"
        shell:
            "python -m deltaspace plant_tasks --spec {params.spec:q} {params.out} --info {output.info:q}"
            " --basis {output.basis:q}"
            " --threads {threads} > {log:q} 2>&1"
