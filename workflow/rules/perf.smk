# Real samples for perf_analyzer (--input-data), from the recipe's dataloader.
rule python_prepare_perf_data:
    input:
        recipe=recipe_files,
        code=package_code("perf_data"),
    output:
        paths.perf_data(),
    log:
        "logs/perf_data/{model}.log",
    conda:
        "../../envs/triton.yaml"
    params:
        settings=model_settings,
        samples=config["perf"]["input_samples"],
        unbatched=config["triton"]["max_batch_size"] == 0,
        input_data=config["perf"]["input_data"],
    script:
        "../scripts/perf_data.py"


# perf_analyzer sweeps against a server started inside the job; one CSV row per sweep point.
# Offline and online read only their own sweep settings, so changing one re-runs only its jobs.
rule perf_analyzer_offline:
    input:
        repository=paths.repository(),
        served_settings=paths.served_settings(),
        io=paths.io_json(),
        data=paths.perf_data(),
        # the in-process outputs the answers under load are checked against (deploysnake.underload)
        artifact=artifact,
        code=package_code("perf"),
    output:
        report(
            paths.perf_csv("offline"),
            caption="../report/perf_offline.rst",
            category="Performance offline",
            subcategory="{model}",
            labels={"model": "{model}", "format": "{format}", "device": "{device}"},
        ),
    log:
        "logs/perf_offline/{model}/{format}/{device}.log",
        server="logs/perf_offline/{model}/{format}/{device}.server.log",
    conda:
        "../../envs/triton.yaml"
    threads: MEASURING_THREADS
    resources:
        gpu=device_resource("gpu"),
        gpu_model=device_resource("gpu_model"),
    params:
        mode="offline",
        server=config["triton"],
        tolerance=check_tolerance,
        perf=perf_settings("offline"),
    script:
        "../scripts/perf.py"


rule perf_analyzer_online:
    input:
        repository=paths.repository(),
        served_settings=paths.served_settings(),
        io=paths.io_json(),
        data=paths.perf_data(),
        # the in-process outputs the answers under load are checked against (deploysnake.underload)
        artifact=artifact,
        code=package_code("perf"),
    output:
        report(
            paths.perf_csv("online"),
            caption="../report/perf_online.rst",
            category="Performance online",
            subcategory="{model}",
            labels={"model": "{model}", "format": "{format}", "device": "{device}"},
        ),
        # the serving floor: a model that computes nothing, same configuration and runner
        floor=paths.floor_csv(),
    log:
        "logs/perf_online/{model}/{format}/{device}.log",
        server="logs/perf_online/{model}/{format}/{device}.server.log",
        floor_server="logs/perf_online/{model}/{format}/{device}.floor.server.log",
    conda:
        "../../envs/triton.yaml"
    threads: MEASURING_THREADS
    resources:
        gpu=device_resource("gpu"),
        gpu_model=device_resource("gpu_model"),
    params:
        mode="online",
        server=config["triton"],
        tolerance=check_tolerance,
        perf=perf_settings("online"),
    script:
        "../scripts/perf.py"
