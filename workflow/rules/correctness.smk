# A checkpoint: the report reads each verdict, and only formats that passed are served and measured.
checkpoint runtime_check_correctness:
    input:
        checkpoint="results/checkpoint/{model}/model.pt",
        artifact=artifact,
        io="results/export/{model}/{format}/io.json",
        recipe=recipe_files,
        code=package_file("correctness"),
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
