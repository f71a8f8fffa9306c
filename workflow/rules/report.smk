# Report: the figures, compute per stage (from every heavy job's benchmark record) and results/summary.md.
# `snakemake --report results/report.html` bundles these with the tables of the other rules.

FIGURE_NAMES = ["transfer_matrix", "relative_performance", "curves_stage1", "curves_stage2", "curves_stage3"]


rule figures:
    input:
        transfer=f"{TABLES_DIR}/transfer.csv",
        relative=f"{TABLES_DIR}/relative_performance.csv",
        stage1=lambda wildcards: [f"{run}/metrics.json" for run in stage1_runs()],
        stage2=f"{SUBSPACE_DIR}/metrics.json",
        stage3=lambda wildcards: [f"{run}/result.json" for run in stage3_runs()],
    output:
        transfer_matrix=report(
            f"{FIGURES_DIR}/transfer_matrix.png",
            caption="../report/figure_transfer_matrix.rst",
            category="Transfer",
            labels={"figure": "transfer matrix"},
        ),
        relative_performance=report(
            f"{FIGURES_DIR}/relative_performance.png",
            caption="../report/figure_relative_performance.rst",
            category="Subspace",
            labels={"figure": "relative performance"},
        ),
        curves_stage1=report(
            f"{FIGURES_DIR}/curves_stage1.png",
            caption="../report/curves_stage1.rst",
            category="Training curves",
            labels={"figure": "stage 1: own space"},
        ),
        curves_stage2=report(
            f"{FIGURES_DIR}/curves_stage2.png",
            caption="../report/curves_stage2.rst",
            category="Training curves",
            labels={"figure": "stage 2: subspace"},
        ),
        curves_stage3=report(
            f"{FIGURES_DIR}/curves_stage3.png",
            caption="../report/curves_stage3.rst",
            category="Training curves",
            labels={"figure": "stage 3: intrinsic vector"},
        ),
        # The same figures for papers and slides.
        pdfs=[f"{FIGURES_DIR}/{name}.pdf" for name in FIGURE_NAMES],
    params:
        stage1_runs=lambda wildcards, input: [os.path.dirname(p) for p in input.stage1],
        stage3_runs=lambda wildcards, input: [os.path.dirname(p) for p in input.stage3],
        out_dir=lambda wildcards, output: os.path.dirname(output.transfer_matrix),
    log:
        f"{LOGS_DIR}/figures.log",
    threads: rule_resource("figures", "threads")
    resources:
        mem_mb=rule_resource("figures", "mem_mb"),
        runtime=rule_resource("figures", "runtime"),
    conda:
        "../../envs/deltaspace.yaml"
    shell:
        "python -m deltaspace figures --transfer {input.transfer:q} --relative {input.relative:q}"
        " --stage1-runs {params.stage1_runs:q} --stage2-metrics {input.stage2:q} --stage3-runs {params.stage3_runs:q}"
        " --out-dir {params.out_dir:q} > {log:q} 2>&1"


rule resource_table:
    input:
        benchmarks=lambda wildcards: [path for _, path in benchmark_records()],
    output:
        table=report(
            f"{TABLES_DIR}/resources.csv",
            caption="../report/resources.rst",
            category="Summary",
            labels={"table": "wall time and peak memory per stage"},
        ),
        summary=f"{TABLES_DIR}/resources.md",
    params:
        records=lambda wildcards: [f"{rule}={path}" for rule, path in benchmark_records()],
    log:
        f"{LOGS_DIR}/resource_table.log",
    threads: rule_resource("resource_table", "threads")
    resources:
        mem_mb=rule_resource("resource_table", "mem_mb"),
        runtime=rule_resource("resource_table", "runtime"),
    conda:
        "../../envs/deltaspace.yaml"
    shell:
        "python -m deltaspace resource-table --benchmarks {params.records:q} --out {output.table:q}"
        " --summary-out {output.summary:q} > {log:q} 2>&1"


rule summary:
    input:
        stage1=f"{TABLES_DIR}/stage1.csv",
        relative=f"{TABLES_DIR}/relative_performance.csv",
        transfer=f"{TABLES_DIR}/transfer.csv",
        transfer_runs=lambda wildcards: transfer_runs(),
        resources=f"{TABLES_DIR}/resources.csv",
        landscape_area=LANDSCAPE_AREA,
    output:
        report(
            SUMMARY,
            caption="../report/summary.rst",
            category="Summary",
            labels={"table": "headline tables (markdown)"},
        ),
    log:
        f"{LOGS_DIR}/summary.log",
    threads: rule_resource("summary", "threads")
    resources:
        mem_mb=rule_resource("summary", "mem_mb"),
        runtime=rule_resource("summary", "runtime"),
    conda:
        "../../envs/deltaspace.yaml"
    shell:
        "python -m deltaspace summary --stage1 {input.stage1:q} --relative {input.relative:q}"
        " --transfer {input.transfer:q} --transfer-runs {input.transfer_runs:q} --resources {input.resources:q}"
        " --landscape-area {input.landscape_area:q} --out {output:q} > {log:q} 2>&1"
