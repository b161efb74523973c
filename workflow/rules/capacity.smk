# Open-loop load and the capacity search (see src/deploysnake/measuring/capacity.py): per model, format and
# device, the highest request rate whose p99 stays within perf.capacity.p99_budget_ms. The search runs
# in one job; each rate it measures is a file of its own (results/capacity/.../{device}/rates/), kept
# when the job stops, so a resumed search measures no rate twice.
rule perf_analyzer_capacity:
    input:
        repository=paths.repository(),
        served_settings=paths.served_settings(),
        io=paths.io_json(),
        data=paths.perf_data(),
        artifact=artifact,
        code=package_code("capacity_search"),
    output:
        csv=paths.served("capacity"),
        json=paths.served("capacity", suffix="json"),
    log:
        "logs/capacity/{model}/{format}/{device}.log",
        server="logs/capacity/{model}/{format}/{device}.server.log",
    conda:
        "../../envs/triton.yaml"
    threads: MEASURING_THREADS
    resources:
        gpu=device_resource("gpu"),
        gpu_model=device_resource("gpu_model"),
    params:
        server=config["triton"],
        capacity=CAPACITY_SETTINGS,
        tolerance=check_tolerance,
        perf=perf_shared(),
    script:
        "../scripts/capacity_search.py"
