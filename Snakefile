# deltaspace: delta tunings (DETs) trained task by task, their solutions collected as vectors.
# Rules live in workflow/rules, the package they call in workflow/deltaspace; see README.md.
import os

from snakemake.utils import min_version

min_version("9.0")


# A --configfile replaces the embedded default instead of merging into it, so presets mean what they say.
if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.basedir, "config", "config.yaml")


include: "workflow/rules/common.smk"


validate_config(config, schema="workflow/schemas/config.schema.yaml")
shell.prefix(job_shell_prefix())


report: "workflow/report/workflow.rst"


include: "workflow/rules/data.smk"
include: "workflow/rules/backbone.smk"
include: "workflow/rules/original.smk"
include: "workflow/rules/decompose.smk"
include: "workflow/rules/optimize.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/landscape.smk"


rule all:
    input:
        final_outputs(),
    default_target: True
