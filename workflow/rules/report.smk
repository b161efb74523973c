# Runs on a node of each device (same resources as that device's measuring jobs).
rule python_describe_environment:
    output:
        paths.environment(),
    log:
        "logs/environment/{device}.log",
    conda:
        "../../envs/report.yaml"
    resources:
        gpu=device_resource("gpu"),
        gpu_model=device_resource("gpu_model"),
    script:
        "../scripts/environment.py"


rule altair_report:
    input:
        # each model's measurements, planned as soon as that model's verdicts exist
        *per_model(report_inputs_of),
        *per_model(floor_inputs_of),
        verdicts=ALL_VERDICTS,
        correctness=correctness_files(),
        deploy=expand(paths.deploy_archive(), device=DEVICES),
        environment=expand(paths.environment(), device=DEVICES),
        summary=paths.SUMMARY,
        gate=paths.GATE,
        code=package_code("report"),
    output:
        report(
            paths.REPORT,
            caption="../report/report.rst",
            category="Report",
            labels={"page": "deploysnake report"},
        ),
    log:
        "logs/report/report.log",
    conda:
        "../../envs/report.yaml"
    params:
        config=config,
        skipped=SKIPPED,
        p99_budget_ms=config["selection"]["p99_budget_ms"],
    script:
        "../scripts/report.py"
