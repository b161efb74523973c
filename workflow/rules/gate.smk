# The run's machine-readable summary, the gate against a baseline run's summary, and the check that
# makes a failed gate fail the run once the report is written (src/deploysnake/summary.py, gate.py).
rule python_write_summary:
    input:
        *per_model(report_inputs_of),
        verdicts=ALL_VERDICTS,
        correctness=correctness_files(),
        environment=expand(paths.environment(), device=DEVICES),
        code=package_code("summary"),
        schema=str(
            Path(workflow.basedir) / "src" / "deploysnake" / "summary.schema.json"
        ),
    output:
        paths.SUMMARY,
    log:
        "logs/summary/summary.log",
    conda:
        "../../envs/report.yaml"
    params:
        # what the summary reads of the config (spreads, budgets, prices, the plan, instances)
        config={k: config[k] for k in ("perf", "selection", "cost", "plan", "triton")},
    script:
        "../scripts/summary.py"


rule python_compare_baseline:
    input:
        summary=paths.SUMMARY,
        baseline=[config["baseline"]] if config["baseline"] else [],
        code=package_code("gate"),
    output:
        paths.GATE,
    log:
        "logs/gate/gate.log",
    conda:
        "../../envs/report.yaml"
    params:
        gate=config["gate"],
        baseline=config["baseline"] or "",
    script:
        "../scripts/gate.py"


# The last job: fails (the run exits non-zero) when the gate failed, after the report exists, and
# names each model and figure that failed on the console.
rule python_check_gate:
    input:
        gate=paths.GATE,
        report=paths.REPORT,
    output:
        paths.GATE_PASSED,
    log:
        "logs/gate/check.log",
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/gate_check.py"


# The release archive: the deploy archive with this device's summary.json inside, what a CI keeps of
# a deployed version; `baseline:` may name it (the gate reads the summary inside).
rule tar_pack_release:
    input:
        archive=paths.deploy_archive(),
        summary=paths.SUMMARY,
        # only a run whose gate passed (or had no baseline) is packed for release
        passed=paths.GATE_PASSED,
        code=package_code("release"),
    output:
        paths.release_archive(),
    log:
        "logs/release/{device}.log",
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/release.py"
