rule runtime_check_correctness:
    input:
        checkpoint=checkpoint_file,
        artifact=artifact,
        io=paths.io_json(),
        recipe=recipe_files,
        code=package_code("correctness"),
    output:
        paths.correctness(),
    log:
        "logs/correctness/{model}/{format}.log",
    conda:
        "../../envs/torch.yaml"
    params:
        settings=model_settings,
        tolerances=format_tolerances,
    script:
        "../scripts/correctness.py"


# A checkpoint: once every format's verdict is in, only the formats that passed are served and measured.
checkpoint python_collect_verdicts:
    input:
        verdicts=lambda w: [paths.correctness(w.model, fmt) for fmt in FORMATS[w.model]],
    output:
        paths.verdicts(),
    log:
        "logs/correctness/{model}/verdicts.log",
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/verdicts.py"
