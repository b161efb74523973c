# Measuring jobs take every core (MEASURING_THREADS) so no other job skews their numbers;
# each starts its own tritonserver on loopback and stops it when done (see its log). This one starts
# it with no model loaded and measures the model's cold start in it first (deploysnake.coldstart).
rule tritonclient_accuracy:
    input:
        repository=paths.repository(),
        served_settings=paths.served_settings(),
        artifact=artifact,
        io=paths.io_json(),
        checkpoint=checkpoint_file,
        recipe=recipe_files,
        code=package_code("accuracy"),
    output:
        csv=report(
            paths.served("accuracy"),
            caption="../report/accuracy.rst",
            category="Accuracy",
            subcategory="{model}",
            labels={"model": "{model}", "format": "{format}", "device": "{device}"},
        ),
        dump=paths.served("accuracy", suffix="npz"),
        # load time, first request without and with model_warmup, memory net of an empty server's
        coldstart=paths.served("accuracy", suffix="coldstart.json"),
    log:
        "logs/accuracy/{model}/{format}/{device}.log",
        server="logs/accuracy/{model}/{format}/{device}.server.log",
    conda:
        "../../envs/triton.yaml"
    threads: MEASURING_THREADS
    resources:
        gpu=device_resource("gpu"),
        gpu_model=device_resource("gpu_model"),
    params:
        settings=model_settings,
        server=config["triton"],
        batch_size=config["accuracy"]["batch_size"],
        tolerances=format_tolerances,
    script:
        "../scripts/accuracy.py"
