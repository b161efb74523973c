rule torch_export_torchscript:
    input:
        checkpoint=checkpoint_file,
        recipe=recipe_files,
        code=package_code("export"),
    output:
        artifact=paths.artifact("model.pt", fmt="torchscript_trace"),
        io=paths.io_json(fmt="torchscript_trace"),
    log:
        "logs/export/{model}/torchscript_trace.log",
    conda:
        "../../envs/torch.yaml"
    params:
        settings=model_settings,
        fmt="torchscript_trace",
        options=EXPORT_OPTIONS,
    script:
        "../scripts/export.py"


rule torch_export_torchscript_script:
    input:
        checkpoint=checkpoint_file,
        recipe=recipe_files,
        code=package_code("export"),
    output:
        artifact=paths.artifact("model.pt", fmt="torchscript_script"),
        io=paths.io_json(fmt="torchscript_script"),
    log:
        "logs/export/{model}/torchscript_script.log",
    conda:
        "../../envs/torch.yaml"
    params:
        settings=model_settings,
        fmt="torchscript_script",
        options=EXPORT_OPTIONS,
    script:
        "../scripts/export.py"


rule torch_export_onnx:
    input:
        checkpoint=checkpoint_file,
        recipe=recipe_files,
        code=package_code("export"),
    output:
        artifact=paths.artifact("model.onnx", fmt="onnx"),
        io=paths.io_json(fmt="onnx"),
    log:
        "logs/export/{model}/onnx.log",
    wildcard_constraints:
        model=models_of(TORCH_MODELS),
    conda:
        "../../envs/torch.yaml"
    params:
        settings=model_settings,
        fmt="onnx",
        options=EXPORT_OPTIONS,
    script:
        "../scripts/export.py"


# torch.export with the ONNX export's dynamic axes, compiled ahead of time by AOTInductor with
# this machine's C++ compiler into one .pt2 package.
rule torch_compile_aoti:
    input:
        checkpoint=checkpoint_file,
        recipe=recipe_files,
        code=package_code("export"),
    output:
        artifact=paths.artifact("model.pt2", fmt="aoti"),
        io=paths.io_json(fmt="aoti"),
    log:
        "logs/export/{model}/aoti.log",
    wildcard_constraints:
        model=models_of(TORCH_MODELS),
    conda:
        "../../envs/torch.yaml"
    params:
        settings=model_settings,
        fmt="aoti",
        options=EXPORT_OPTIONS,
    script:
        "../scripts/export.py"


# Precision variants of the ONNX export: graph-optimized, fp16 (fp32 IO), int8 static QDQ.
rule onnxruntime_convert_variant:
    input:
        onnx=paths.artifact("model.onnx", fmt="onnx"),
        io=paths.io_json(fmt="onnx"),
        recipe=recipe_files,
        code=package_code("onnx_variant"),
    output:
        artifact=paths.artifact("model.onnx"),
        io=paths.io_json(),
    log:
        "logs/export/{model}/{format}.log",
    wildcard_constraints:
        format="|".join(ONNX_VARIANTS),
    conda:
        "../../envs/torch.yaml"
    params:
        settings=model_settings,
        options=config["export"],
    script:
        "../scripts/onnx_variant.py"


# TensorRT plans from the ONNX export: planned only where a GPU and tensorrt exist (formats: auto).
rule tensorrt_build_plan:
    input:
        onnx=paths.artifact("model.onnx", fmt="onnx"),
        io=paths.io_json(fmt="onnx"),
        recipe=recipe_files,
        code=package_code("onnx_variant"),
    output:
        artifact=paths.artifact("model.plan"),
        io=paths.io_json(),
    log:
        "logs/export/{model}/{format}.log",
    wildcard_constraints:
        format="|".join(TENSORRT),
    conda:
        "../../envs/torch.yaml"
    params:
        settings=model_settings,
        options={
            **config["export"],
            "max_batch_size": config["triton"]["max_batch_size"],
        },
    script:
        "../scripts/onnx_variant.py"


rule tensorflow_export_savedmodel:
    input:
        checkpoint=checkpoint_file,
        recipe=recipe_files,
        code=package_code("export"),
    output:
        artifact=directory(paths.artifact("model.savedmodel", fmt="savedmodel")),
        io=paths.io_json(fmt="savedmodel"),
    log:
        "logs/export/{model}/savedmodel.log",
    wildcard_constraints:
        model=models_of(KERAS_MODELS),
    conda:
        "../../envs/tensorflow.yaml"
    params:
        settings=model_settings,
        fmt="savedmodel",
        options=EXPORT_OPTIONS,
    script:
        "../scripts/export.py"


# ONNX of a Keras model: tf2onnx on the SavedModel.
rule tf2onnx_convert:
    input:
        checkpoint=checkpoint_file,
        savedmodel=paths.artifact("model.savedmodel", fmt="savedmodel"),
        recipe=recipe_files,
        code=package_code("export"),
    output:
        artifact=paths.artifact("model.onnx", fmt="onnx"),
        io=paths.io_json(fmt="onnx"),
    log:
        "logs/export/{model}/onnx.log",
    wildcard_constraints:
        model=models_of(KERAS_MODELS),
    conda:
        "../../envs/tensorflow.yaml"
    params:
        settings=model_settings,
        fmt="onnx",
        options=EXPORT_OPTIONS,
    script:
        "../scripts/export.py"
