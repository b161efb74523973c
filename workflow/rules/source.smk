# Exported models given in the config (models.<name>.onnx, torchscript, savedmodel, triton_model,
# exported_program)
# instead of a recipe: the given file is the reference; its own format is a copy of it, and ONNX is
# converted from it (the ONNX variants and TensorRT then come from export.smk's rules).
SOURCE_MODELS = {
    kind: [m for m in MODELS if config["models"][m]["framework"] == kind]
    for kind in ("onnx", "torchscript", "savedmodel", "exported_program")
}


# The source's "checkpoint": its IO description, checked (ambiguous batch axis, missing ranges,
# a dataloader or metrics that break the contract) before anything else of the model runs.
rule python_describe_source:
    input:
        given=lambda w: source_inputs(config["models"][w.model]),
        code=package_code("source_describe"),
    output:
        paths.source_description(),
    log:
        "logs/checkpoint/{model}.log",
    wildcard_constraints:
        model=models_of(sum(SOURCE_MODELS.values(), [])),
    conda:
        "../../envs/torch.yaml"
    params:
        settings=model_settings,
    script:
        "../scripts/source_describe.py"


rule onnx_copy_source:
    input:
        checkpoint=checkpoint_file,
        recipe=recipe_files,
        code=package_code("source_export"),
    output:
        artifact=paths.artifact("model.onnx", fmt="onnx"),
        io=paths.io_json(fmt="onnx"),
    log:
        "logs/export/{model}/onnx.log",
    wildcard_constraints:
        model=models_of(SOURCE_MODELS["onnx"]),
    conda:
        "../../envs/torch.yaml"
    params:
        settings=model_settings,
        fmt="onnx",
        options=config["export"],
    script:
        "../scripts/source_export.py"


rule torch_copy_source:
    input:
        checkpoint=checkpoint_file,
        recipe=recipe_files,
        code=package_code("source_export"),
    output:
        artifact=paths.artifact("model.pt", fmt="torchscript"),
        io=paths.io_json(fmt="torchscript"),
    log:
        "logs/export/{model}/torchscript.log",
    wildcard_constraints:
        model=models_of(SOURCE_MODELS["torchscript"]),
    conda:
        "../../envs/torch.yaml"
    params:
        settings=model_settings,
        fmt="torchscript",
        options=config["export"],
    script:
        "../scripts/source_export.py"


rule torch_export_onnx_torchscript:
    input:
        checkpoint=checkpoint_file,
        recipe=recipe_files,
        code=package_code("source_export"),
    output:
        artifact=paths.artifact("model.onnx", fmt="onnx"),
        io=paths.io_json(fmt="onnx"),
    log:
        "logs/export/{model}/onnx.log",
    wildcard_constraints:
        model=models_of(SOURCE_MODELS["torchscript"]),
    conda:
        "../../envs/torch.yaml"
    params:
        settings=model_settings,
        fmt="onnx",
        options=config["export"],
    script:
        "../scripts/source_export.py"


rule tensorflow_copy_source:
    input:
        checkpoint=checkpoint_file,
        recipe=recipe_files,
        code=package_code("source_export"),
    output:
        artifact=directory(paths.artifact("model.savedmodel", fmt="savedmodel")),
        io=paths.io_json(fmt="savedmodel"),
    log:
        "logs/export/{model}/savedmodel.log",
    wildcard_constraints:
        model=models_of(SOURCE_MODELS["savedmodel"]),
    conda:
        "../../envs/tensorflow.yaml"
    params:
        settings=model_settings,
        fmt="savedmodel",
        options=config["export"],
    script:
        "../scripts/source_export.py"


rule tf2onnx_convert_source:
    input:
        checkpoint=checkpoint_file,
        recipe=recipe_files,
        code=package_code("source_export"),
    output:
        artifact=paths.artifact("model.onnx", fmt="onnx"),
        io=paths.io_json(fmt="onnx"),
    log:
        "logs/export/{model}/onnx.log",
    wildcard_constraints:
        model=models_of(SOURCE_MODELS["savedmodel"]),
    conda:
        "../../envs/tensorflow.yaml"
    params:
        settings=model_settings,
        fmt="onnx",
        options=config["export"],
    script:
        "../scripts/source_export.py"


# A torch.export program (models.<name>.exported_program) is the reference: AOTInductor compiles
# it into aoti, the dynamo exporter converts it to onnx.
rule torch_compile_aoti_program:
    input:
        checkpoint=checkpoint_file,
        recipe=recipe_files,
        code=package_code("source_export"),
    output:
        artifact=paths.artifact("model.pt2", fmt="aoti"),
        io=paths.io_json(fmt="aoti"),
    log:
        "logs/export/{model}/aoti.log",
    wildcard_constraints:
        model=models_of(SOURCE_MODELS["exported_program"]),
    conda:
        "../../envs/torch.yaml"
    params:
        settings=model_settings,
        fmt="aoti",
        options=config["export"],
    script:
        "../scripts/source_export.py"


rule torch_export_onnx_program:
    input:
        checkpoint=checkpoint_file,
        recipe=recipe_files,
        code=package_code("source_export"),
    output:
        artifact=paths.artifact("model.onnx", fmt="onnx"),
        io=paths.io_json(fmt="onnx"),
    log:
        "logs/export/{model}/onnx.log",
    wildcard_constraints:
        model=models_of(SOURCE_MODELS["exported_program"]),
    conda:
        "../../envs/torch.yaml"
    params:
        settings=model_settings,
        fmt="onnx",
        options=config["export"],
    script:
        "../scripts/source_export.py"
