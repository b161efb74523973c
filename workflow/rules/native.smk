# The same artifact in-process at the offline batch sizes, with the served instances and runtime
# threads: the baseline for served/native. After the offline perf job: a served figure above the
# in-process one by more than the spread is measured again, then marked "baseline suspect".
rule runtime_native_baseline:
    input:
        artifact=artifact,
        io="results/export/{model}/{format}/io.json",
        data="results/perf_data/{model}/input.json",
        # the served instances, runtime threads and knobs (the tuned ones where the format was tuned)
        served_settings="results/repository/{model}/{format}/{device}.json",
        served="results/perf_offline/{model}/{format}/{device}.csv",
        code=package_code("native"),
    output:
        report(
            "results/native/{model}/{format}/{device}.csv",
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
