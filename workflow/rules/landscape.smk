# The performance landscape: every DET evaluated on a grid over the plane through the DETs' points of a task.
# Its helpers (landscape_tasks, landscape_spec, ...) are in common.smk.


rule landscape:
    input:
        subspace=f"{SUBSPACE_DIR}/subspace.safetensors",
        points=f"{SUBSPACE_DIR}/points.csv",
        summary=f"{DATA_DIR}/task.json",
        stage1=lambda wildcards: [f"{STAGE1_RUN}/delta.safetensors".format(task=wildcards.task, det=d, seed=wildcards.seed)
                                  for d in det_names()],
        stage1_metrics=lambda wildcards: [f"{STAGE1_RUN}/metrics.json".format(task=wildcards.task, det=d, seed=wildcards.seed)
                                          for d in det_names()],
        stage3=landscape_stage3,
    output:
        grid=report(
            f"{LANDSCAPE_RUN}/grid.csv",
            caption="../report/landscape_grid.rst",
            category="Landscape",
            subcategory="{task}",
            labels={"task": "{task}", "seed": "{seed}", "figure": "grid (table)"},
        ),
        heatmaps=[
            report(
                f"{LANDSCAPE_RUN}/heatmap_{det}.png",
                caption="../report/landscape_heatmap.rst",
                category="Landscape",
                subcategory="{task}",
                labels={"task": "{task}", "seed": "{seed}", "figure": f"heat map: {det}"},
            )
            for det in det_names()
        ],
        region=report(
            f"{LANDSCAPE_RUN}/region.png",
            caption="../report/landscape_region.rst",
            category="Landscape",
            subcategory="{task}",
            labels={"task": "{task}", "seed": "{seed}", "figure": "region where every DET does well"},
        ),
        # The same figures for papers and slides.
        pdfs=[f"{LANDSCAPE_RUN}/{name}.pdf" for name in ["region", *(f"heatmap_{det}" for det in det_names())]],
        area=f"{LANDSCAPE_RUN}/area.csv",
        info=f"{LANDSCAPE_RUN}/landscape.json",
    params:
        spec=landscape_spec,
        data_dir=lambda wildcards, input: os.path.dirname(input.summary),
        stage1=lambda wildcards, input: [f"{d}={os.path.dirname(p)}" for d, p in zip(det_names(), input.stage1)],
        stage3=lambda wildcards, input: [f"{d}={os.path.dirname(p)}" for d, p in zip(det_names(), input.stage3)],
        out_dir=lambda wildcards, output: os.path.dirname(output.grid),
    log:
        f"{LOGS_DIR}/landscape/{{task}}/seed{{seed}}.log",
    benchmark:
        BENCHMARKS["landscape"]
    # Ready once its task's stage 3 is done: it goes before the other tasks' stage-3 jobs, so no core idles at the end.
    priority: 1
    threads: rule_resource("landscape", "threads")
    resources:
        mem_mb=rule_resource("landscape", "mem_mb"),
        runtime=rule_resource("landscape", "runtime"),
        gpu=rule_resource("landscape", "gpu"),
    conda:
        "../../envs/deltaspace.yaml"
    shell:
        "python -m deltaspace landscape --task {wildcards.task:q} --seed {wildcards.seed} --spec {params.spec:q}"
        " --subspace {input.subspace:q} --points {input.points:q} --stage1 {params.stage1:q}"
        " --stage3 {params.stage3:q} --data-dir {params.data_dir:q} --out-dir {params.out_dir:q}"
        " --threads {threads} > {log:q} 2>&1"


rule landscape_table:
    input:
        areas=[f"{run}/area.csv" for run in landscape_runs()],
    output:
        report(
            LANDSCAPE_AREA,
            caption="../report/landscape_area.rst",
            category="Landscape",
            labels={"table": "area where every DET does well"},
        ),
    params:
        runs=lambda wildcards, input: [os.path.dirname(p) for p in input.areas],
    log:
        f"{LOGS_DIR}/landscape_table.log",
    threads: rule_resource("landscape_table", "threads")
    resources:
        mem_mb=rule_resource("landscape_table", "mem_mb"),
        runtime=rule_resource("landscape_table", "runtime"),
    conda:
        "../../envs/deltaspace.yaml"
    shell:
        "python -m deltaspace landscape-table --runs {params.runs:q} --out {output:q} > {log:q} 2>&1"
