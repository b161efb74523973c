# perf_analyzer sweeps against a server started inside the job; one CSV row per sweep point.
# Offline and online read only their own sweep settings, so changing one re-runs only its jobs.
rule perf_analyzer_offline:
    input:
        repository="results/repository/{model}/{format}/{device}",
        io="results/export/{model}/{format}/io.json",
        code=package_file("perf"),
    output:
        "results/perf_offline/{model}/{format}/{device}.csv",
    log:
        "logs/perf_offline/{model}/{format}/{device}.log",
        server="logs/perf_offline/{model}/{format}/{device}.server.log",
    conda:
        "../../envs/triton.yaml"
    threads: workflow.cores
    params:
        mode="offline",
        server=config["triton"],
        perf=perf_settings("offline"),
    script:
        "../scripts/perf.py"


rule perf_analyzer_online:
    input:
        repository="results/repository/{model}/{format}/{device}",
        io="results/export/{model}/{format}/io.json",
        code=package_file("perf"),
    output:
        "results/perf_online/{model}/{format}/{device}.csv",
    log:
        "logs/perf_online/{model}/{format}/{device}.log",
        server="logs/perf_online/{model}/{format}/{device}.server.log",
    conda:
        "../../envs/triton.yaml"
    threads: workflow.cores
    params:
        mode="online",
        server=config["triton"],
        perf=perf_settings("online"),
    script:
        "../scripts/perf.py"
