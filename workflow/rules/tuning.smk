# The search of Triton's configuration space (see src/deploysnake/tuning/): each round is a
# checkpoint that plans its trials from every trial measured before it; each trial is a cached job.
checkpoint python_plan_tuning_round:
    input:
        earlier=earlier_trials,
        code=package_code("tuning_plan"),
    output:
        paths.tuning_file("round{round}.json"),
    log:
        "logs/tuning/{model}/{format}/{device}/round{round}.log",
    conda:
        "../../envs/triton.yaml"
    params:
        settings=config["tuning"],
        triton=config["triton"],
    script:
        "../scripts/tuning_plan.py"


# One trial: its repository, a server started inside the job, one perf_analyzer point.
rule perf_analyzer_tuning_trial:
    input:
        artifact=artifact,
        io=paths.io_json(),
        data=paths.perf_data(),
        code=package_code("tuning_trial"),
        runner=runner_files(),
    output:
        paths.tuning_file("trials/{trial}.csv"),
    log:
        "logs/tuning/{model}/{format}/{device}/trials/{trial}.log",
        server="logs/tuning/{model}/{format}/{device}/trials/{trial}.server.log",
    conda:
        "../../envs/triton.yaml"
    threads: MEASURING_THREADS
    resources:
        gpu=device_resource("gpu"),
        gpu_model=device_resource("gpu_model"),
    params:
        settings=TUNING_TRIAL,
        triton=TRIAL_TRITON,
        perf=perf_shared(),
        flavour=SERVER_FLAVOUR,
    script:
        "../scripts/tuning_trial.py"


# The search's best trials and the untuned configuration measured again in alternation (a trial is
# one short window, the search's best the largest of many noisy numbers): the choice is made from these.
rule perf_analyzer_tuning_side_by_side:
    input:
        unpack(tuning_rounds),
        artifact=artifact,
        io=paths.io_json(),
        data=paths.perf_data(),
        code=package_code("tuning_side_by_side"),
        runner=runner_files(),
    output:
        paths.tuning_file("side_by_side.csv"),
    log:
        "logs/tuning/{model}/{format}/{device}/side_by_side.log",
        server="logs/tuning/{model}/{format}/{device}/side_by_side.server.log",
    conda:
        "../../envs/triton.yaml"
    threads: MEASURING_THREADS
    resources:
        gpu=device_resource("gpu"),
        gpu_model=device_resource("gpu_model"),
    params:
        settings=TUNING_SIDE_BY_SIDE,
        triton=config["triton"],
        perf=perf_shared(),
        flavour=SERVER_FLAVOUR,
    script:
        "../scripts/tuning_side_by_side.py"


rule python_choose_tuning:
    input:
        unpack(tuning_rounds),
        side=side_by_side_file,
        io=paths.io_json(),
        code=package_code("tuning_choose"),
    output:
        chosen=paths.chosen(),
        trials=report(
            paths.tuning_file("trials.csv"),
            caption="../report/tuning.rst",
            category="Tuning",
            subcategory="{model}",
            labels={"model": "{model}", "format": "{format}", "device": "{device}"},
        ),
    log:
        "logs/tuning/{model}/{format}/{device}/chosen.log",
    conda:
        "../../envs/triton.yaml"
    params:
        settings=config["tuning"],
        triton=config["triton"],
    script:
        "../scripts/tuning_choose.py"
