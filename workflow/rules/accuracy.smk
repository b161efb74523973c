# Measuring jobs take every core (MEASURING_THREADS) so no other job skews their numbers;
# each starts its own tritonserver on loopback and stops it when done (see its log).
rule tritonclient_accuracy:
    input:
        repository="results/repository/{model}/{format}/{device}",
        artifact=artifact,
        io="results/export/{model}/{format}/io.json",
        checkpoint=checkpoint_file,
        recipe=recipe_files,
        code=package_code("accuracy"),
    output:
        csv=report(
            "results/accuracy/{model}/{format}/{device}.csv",
            caption="../report/accuracy.rst",
            category="Accuracy",
            subcategory="{model}",
            labels={"model": "{model}", "format": "{format}", "device": "{device}"},
        ),
        dump="results/accuracy/{model}/{format}/{device}.npz",
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
        tolerances=config["correctness"],
    script:
        "../scripts/accuracy.py"
