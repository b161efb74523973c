# deploysnake: trained model -> exported, checked, served on Triton, measured -> results/report.html
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


# snakemake --report report.zip: the flagged results with their provenance (workflow/report/).
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/checkpoint.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/correctness.smk"
include: "workflow/rules/repository.smk"
include: "workflow/rules/accuracy.smk"
include: "workflow/rules/perf.smk"
include: "workflow/rules/capacity.smk"
include: "workflow/rules/tuning.smk"
include: "workflow/rules/native.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        "results/report.html",
