rule torch_export_torchscript:
    input:
        checkpoint=checkpoint_file,
        recipe=recipe_files,
        code=package_code("export"),
    output:
        artifact="results/export/{model}/torchscript_trace/model.pt",
        io="results/export/{model}/torchscript_trace/io.json",
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
        artifact="results/export/{model}/torchscript_script/model.pt",
        io="results/export/{model}/torchscript_script/io.json",
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
        artifact="results/export/{model}/onnx/model.onnx",
        io="results/export/{model}/onnx/io.json",
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
        artifact="results/export/{model}/aoti/model.pt2",
        io="results/export/{model}/aoti/io.json",
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
        onnx="results/export/{model}/onnx/model.onnx",
        io="results/export/{model}/onnx/io.json",
        recipe=recipe_files,
        code=package_code("onnx_variant"),
    output:
        artifact="results/export/{model}/{format}/model.onnx",
        io="results/export/{model}/{format}/io.json",
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
        onnx="results/export/{model}/onnx/model.onnx",
        io="results/export/{model}/onnx/io.json",
        recipe=recipe_files,
        code=package_code("onnx_variant"),
    output:
        artifact="results/export/{model}/{format}/model.plan",
        io="results/export/{model}/{format}/io.json",
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
        artifact=directory("results/export/{model}/savedmodel/model.savedmodel"),
        io="results/export/{model}/savedmodel/io.json",
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
        savedmodel="results/export/{model}/savedmodel/model.savedmodel",
        recipe=recipe_files,
        code=package_code("export"),
    output:
        artifact="results/export/{model}/onnx/model.onnx",
        io="results/export/{model}/onnx/io.json",
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
