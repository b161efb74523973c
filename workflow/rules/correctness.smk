rule runtime_check_correctness:
    input:
        checkpoint=checkpoint_file,
        artifact=artifact,
        io="results/export/{model}/{format}/io.json",
        recipe=recipe_files,
        code=package_code("correctness"),
    output:
        "results/correctness/{model}/{format}.json",
    log:
        "logs/correctness/{model}/{format}.log",
    conda:
        "../../envs/torch.yaml"
    params:
        settings=model_settings,
        tolerances=config["correctness"],
    script:
        "../scripts/correctness.py"


# A checkpoint: once every format's verdict is in, only the formats that passed are served and measured.
checkpoint python_collect_verdicts:
    input:
        verdicts=lambda w: expand(
            "results/correctness/{{model}}/{format}.json", format=FORMATS[w.model]
        ),
    output:
        "results/correctness/{model}/verdicts.json",
    log:
        "logs/correctness/{model}/verdicts.log",
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/verdicts.py"
