rule torch_export_torchscript:
    input:
        checkpoint="results/checkpoint/{model}/model.pt",
        recipe=recipe_files,
        code=package_file("export"),
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
        options=config["export"],
    script:
        "../scripts/export.py"


rule torch_export_onnx:
    input:
        checkpoint="results/checkpoint/{model}/model.pt",
        recipe=recipe_files,
        code=package_file("export"),
    output:
        artifact="results/export/{model}/onnx/model.onnx",
        io="results/export/{model}/onnx/io.json",
    log:
        "logs/export/{model}/onnx.log",
    conda:
        "../../envs/torch.yaml"
    params:
        settings=model_settings,
        fmt="onnx",
        options=config["export"],
    script:
        "../scripts/export.py"
