rule torch_train:
    input:
        recipe=recipe_files,
        given=given_checkpoint,
        code=package_file("checkpoint"),
    output:
        "results/checkpoint/{model}/model.pt",
    log:
        "logs/checkpoint/{model}.log",
    conda:
        "../../envs/torch.yaml"
    params:
        settings=model_settings,
    script:
        "../scripts/checkpoint.py"
