# The same artifact in-process at the offline batch sizes, with the served instances and runtime
# threads: the baseline for served/native. After the offline perf job: a served figure above the
# in-process one by more than the spread is measured again, then marked "baseline suspect".
rule runtime_native_baseline:
    input:
        artifact=artifact,
        io=paths.io_json(),
        data=paths.perf_data(),
        # the served instances, runtime threads and knobs (the tuned ones where the format was tuned)
        served_settings=paths.served_settings(),
        served=paths.perf_csv("offline"),
        code=package_code("native"),
    output:
        report(
            paths.served("native"),
            caption="../report/native.rst",
            category="Native baseline",
            subcategory="{model}",
            labels={"model": "{model}", "format": "{format}", "device": "{device}"},
        ),
    log:
        "logs/native/{model}/{format}/{device}.log",
    conda:
        "../../envs/torch.yaml"
    threads: MEASURING_THREADS
    resources:
        gpu=device_resource("gpu"),
        gpu_model=device_resource("gpu_model"),
    params:
        batch_sizes=config["perf"]["offline"]["batch_sizes"],
        native=config["native"],
        sanity={
            "spread": config["perf"]["stability_percentage"] / 100.0,
            "max_foreign_cpu": config["perf"]["max_foreign_cpu"],
        },
        perf_input=config["perf"]["input_data"],
        sizing=config["perf"]["sizing"],
    script:
        "../scripts/native.py"
