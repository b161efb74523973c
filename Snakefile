# deploysnake: trained model -> exported, checked, served on Triton, measured -> results/report.html
from snakemake.utils import min_version

min_version("9.0")

import sys

sys.path.insert(0, f"{workflow.basedir}/src")  # the package, also under --sdm conda
from deploysnake.configuration import check_raw
from deploysnake.errors import UserError
from snakemake.exceptions import WorkflowError

# Snakemake has read --configfile (and run its YTE templating, if the file asked) before this line;
# the merge below and Snakemake's hashing would expand a YAML alias bomb: refuse it first.
try:
    check_raw(
        workflow.config_settings.overwrite_config, workflow.overwrite_configfiles or ()
    )
except UserError as exc:
    raise WorkflowError(str(exc))


configfile: "config/config.yaml"


# A config given on the command line (--configfile, --config) that names models deploys exactly
# those: Snakemake merges it into the default key by key, which would keep the default's digits.
# Every other key still merges, so a user's file holds only what differs from the default.
if "models" in workflow.config_settings.overwrite_config:
    config["models"] = workflow.config_settings.overwrite_config["models"]


# snakemake --report report.zip: the flagged results with their provenance (workflow/report/).
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/checkpoint.smk"
include: "workflow/rules/source.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/correctness.smk"
include: "workflow/rules/repository.smk"
include: "workflow/rules/accuracy.smk"
include: "workflow/rules/perf.smk"
include: "workflow/rules/capacity.smk"
include: "workflow/rules/tuning.smk"
include: "workflow/rules/native.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/gate.smk"


# Jobs that read a few small files and write a few (verdicts, a repository's config.pbtxt, the
# summary, the report, the search's plans): under a cluster executor they run on the submitting
# host instead of through the queue, where each would wait for a submission and a status check
# (seconds to minutes) for a second of work. Jobs that load a model, train, or measure, and the one
# that describes the machine, always go to a node.
localrules:
    all,
    python_collect_verdicts,
    triton_write_repository,
    python_plan_tuning_round,
    python_choose_tuning,
    python_write_summary,
    python_compare_baseline,
    python_check_gate,
    altair_report,


rule all:
    default_target: True
    input:
        paths.REPORT,
        # fails the run, after the report, when the gate against config baseline failed
        paths.GATE_PASSED,
        # each device's deploy archive with the run's summary inside (a later run's baseline)
        expand(paths.release_archive(), device=DEVICES),
