# The performance landscape: every DET evaluated on a grid over the plane through the DETs' points of a task.
# Its helpers (landscape_tasks, landscape_spec, ...) are in common.smk.


rule landscape:
    input:
        backbone=backbone_input,
        subspace=DECOMPOSITION.subspace,
        points=DECOMPOSITION.points,
        **named(DATA),
        original=lambda wildcards: [path for run in landscape_original(wildcards).values() for path in run.paths()],
        optimize=lambda wildcards: list(landscape_optimize(wildcards).values()),
    output:
        grid=report(
            LANDSCAPE.grid,
            caption="../report/landscape_grid.rst",
            category="Landscape",
            subcategory="{task}",
            labels={"task": "{task}", "seed": "{seed}", "figure": "grid (table)"},
        ),
        heatmaps=[
            report(
                LANDSCAPE.heatmap(det),
                caption="../report/landscape_heatmap.rst",
                category="Landscape",
                subcategory="{task}",
                labels={"task": "{task}", "seed": "{seed}", "figure": f"heat map: {det}"},
            )
            for det in det_names()
        ],
        region=report(
            LANDSCAPE.region,
            caption="../report/landscape_region.rst",
            category="Landscape",
            subcategory="{task}",
            labels={"task": "{task}", "seed": "{seed}", "figure": "region where every DET does well"},
        ),
        # The same figures for papers and slides.
        pdfs=[paths.pdf_twin(png) for png in [LANDSCAPE.region, *(LANDSCAPE.heatmap(det) for det in det_names())]],
        area=LANDSCAPE.area,
        info=LANDSCAPE.info,
    params:
        spec=landscape_spec,
        data=lambda wildcards, input: files_option("data", io_files(paths.TaskData, input)),
        original=lambda wildcards: files_option("original", landscape_original(wildcards)),
        # A training task has no optimize vectors: the option is left out.
        optimize=lambda wildcards, input: pairs_option("optimize", landscape_optimize(wildcards)) if input.optimize else "",
        out=lambda wildcards, output: files_option(
            "out", paths.Landscape(grid=output.grid, area=output.area, info=output.info, region=output.region)
        ),
    log:
        f"{LOGS}/landscape/{{task}}/seed{{seed}}.log",
    benchmark:
        BENCHMARK_FILES["landscape"]
    # Ready once its task's stage 3 is done: it goes before the other tasks' stage-3 jobs (priority 1), so no core
    # idles at the end.
    priority: 2
    threads: rule_resource("landscape", "threads")
    resources:
        mem_mb=rule_resource("landscape", "mem_mb"),
        runtime=rule_resource("landscape", "runtime"),
        gpu=rule_resource("landscape", "gpu"),
    conda:
        "../../envs/deltaspace.yaml"
    shell:
        "python -m deltaspace landscape --task {wildcards.task:q} --seed {wildcards.seed} --spec {params.spec:q}"
        " --subspace-path {input.subspace:q} --points-csv {input.points:q} {params.original} {params.optimize}"
        " {params.data} {params.out} --threads {threads} > {log:q} 2>&1"


rule landscape_table:
    input:
        areas=[run.area for run in landscape_runs()],
    output:
        report(
            LANDSCAPE_AREA,
            caption="../report/landscape_area.rst",
            category="Landscape",
            labels={"table": "area where every DET does well"},
        ),
    log:
        f"{LOGS}/landscape_table.log",
    threads: rule_resource("landscape_table", "threads")
    resources:
        mem_mb=rule_resource("landscape_table", "mem_mb"),
        runtime=rule_resource("landscape_table", "runtime"),
    conda:
        "../../envs/deltaspace.yaml"
    shell:
        "python -m deltaspace landscape_table --areas {input.areas:q} --out {output:q} > {log:q} 2>&1"
