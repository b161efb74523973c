rule torch_train:
    input:
        recipe=recipe_files,
        given=given_checkpoint,
        code=package_code("checkpoint"),
    output:
        paths.checkpoint("model.pt"),
    log:
        "logs/checkpoint/{model}.log",
    wildcard_constraints:
        model=models_of(TORCH_MODELS),
    conda:
        "../../envs/torch.yaml"
    params:
        settings=model_settings,
    script:
        "../scripts/checkpoint.py"


rule keras_train:
    input:
        recipe=recipe_files,
        given=given_checkpoint,
        code=package_code("checkpoint"),
    output:
        paths.checkpoint("model.weights.h5"),
    log:
        "logs/checkpoint/{model}.log",
    wildcard_constraints:
        model=models_of(KERAS_MODELS),
    conda:
        "../../envs/tensorflow.yaml"
    params:
        settings=model_settings,
    script:
        "../scripts/checkpoint.py"
