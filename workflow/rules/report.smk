# Report: the figures, compute per stage (from every heavy job's benchmark record) and results/summary.md.
# `snakemake --report results/report.html` bundles these with the tables of the other rules.

FIGURE_REPORT = {  # figure -> (caption file, report category, label)
    "transfer_matrix": ("figure_transfer_matrix", "Transfer", "transfer matrix"),
    "relative_performance": ("figure_relative_performance", "Optimize", "relative performance"),
    "curves_original": ("curves_original", "Training curves", "stage 1: original space"),
    "curves_decompose": ("curves_decompose", "Training curves", "stage 2: decompose"),
    "curves_optimize": ("curves_optimize", "Training curves", "stage 3: intrinsic vector"),
}


rule figures:
    input:
        transfer=RESULT_TABLES.transfer,
        relative=RESULT_TABLES.relative,
        intervals=RESULT_TABLES.intervals,
        original=lambda wildcards: [run.metrics for run in original_runs()],
        decompose=DECOMPOSITION.metrics,
        optimize=lambda wildcards: [run.result for run in optimize_runs()],
    output:
        **{
            name: report(png, caption=f"../report/{caption}.rst", category=category, labels={"figure": label})
            for name, png in named(FIGURES_FILES).items()
            for caption, category, label in [FIGURE_REPORT[name]]
        },
        # The same figures for papers and slides.
        pdfs=[paths.pdf_twin(png) for png in FIGURES_FILES.paths()],
    params:
        out=lambda wildcards, output: files_option("out", io_files(paths.Figures, output)),
    log:
        f"{LOGS}/figures.log",
    threads: rule_resource("figures", "threads")
    resources:
        mem_mb=rule_resource("figures", "mem_mb"),
        runtime=rule_resource("figures", "runtime"),
    conda:
        "../../envs/deltaspace.yaml"
    shell:
        "python -m deltaspace figures --transfer-csv {input.transfer:q} --relative-csv {input.relative:q}"
        " --intervals-csv {input.intervals:q}"
        " --original-metrics {input.original:q} --decompose-metrics {input.decompose:q}"
        " --optimize-results {input.optimize:q} {params.out} > {log:q} 2>&1"


rule resource_table:
    input:
        benchmarks=lambda wildcards: [path for _, path in benchmark_records()],
    output:
        table=report(
            RESOURCES.table,
            caption="../report/resources.rst",
            category="Summary",
            labels={"table": "wall time and peak memory per stage"},
        ),
        summary=RESOURCES.summary,
    params:
        records=lambda wildcards: " ".join(shlex.quote(f"{rule}={path}") for rule, path in benchmark_records()),
        out=lambda wildcards, output: files_option("out", io_files(paths.ResourceTable, output)),
    log:
        f"{LOGS}/resource_table.log",
    threads: rule_resource("resource_table", "threads")
    resources:
        mem_mb=rule_resource("resource_table", "mem_mb"),
        runtime=rule_resource("resource_table", "runtime"),
    conda:
        "../../envs/deltaspace.yaml"
    shell:
        "python -m deltaspace resource_table --benchmarks {params.records} {params.out} > {log:q} 2>&1"


rule summary:
    input:
        original=ORIGINAL_TABLE,
        relative=RESULT_TABLES.relative,
        intervals=RESULT_TABLES.intervals,
        transfer=RESULT_TABLES.transfer,
        transfer_runs=lambda wildcards: transfer_runs(),
        resources=RESOURCES.table,
        landscape_area=LANDSCAPE_AREA,
        decompose_metrics=DECOMPOSITION.metrics,
    output:
        report(
            SUMMARY,
            caption="../report/summary.rst",
            category="Summary",
            labels={"table": "headline tables (markdown)"},
        ),
    log:
        f"{LOGS}/summary.log",
    threads: rule_resource("summary", "threads")
    resources:
        mem_mb=rule_resource("summary", "mem_mb"),
        runtime=rule_resource("summary", "runtime"),
    conda:
        "../../envs/deltaspace.yaml"
    shell:
        "python -m deltaspace summary --original-csv {input.original:q} --relative-csv {input.relative:q}"
        " --intervals-csv {input.intervals:q}"
        " --transfer-csv {input.transfer:q} --transfer-runs {input.transfer_runs:q} --resources-csv {input.resources:q}"
        " --landscape-csv {input.landscape_area:q} --decompose-metrics {input.decompose_metrics:q}"
        " --out {output:q} > {log:q} 2>&1"
