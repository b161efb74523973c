rule python_describe_environment:
    output:
        "results/environment/environment.json",
    log:
        "logs/environment/environment.log",
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/environment.py"


rule altair_report:
    input:
        unpack(report_inputs),
        code=package_file("report"),
    output:
        "results/report.html",
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
