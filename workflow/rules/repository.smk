rule triton_write_repository:
    input:
        artifact=artifact,
        io=paths.io_json(),
        tuned=tuned_config,
        code=package_code("repository"),
        runner=runner_files(),
    output:
        repository=directory(paths.repository()),
        # the settings it was written with, resolved here once (contracts.ServedSettings)
        settings=paths.served_settings(),
    log:
        "logs/repository/{model}/{format}/{device}.log",
    conda:
        "../../envs/triton.yaml"
    params:
        triton=config["triton"],
        flavour=SERVER_FLAVOUR,
    script:
        "../scripts/repository.py"


# The native repository a production Triton (NGC container, GPU) loads as is, packed as one archive.
rule triton_write_deploy:
    input:
        *per_model(deploy_inputs_of),
        verdicts=ALL_VERDICTS,
        code=package_code("deploy"),
        # plan.scale instances: config.pbtxt gets the capacity plan's instance count
        summary=(
            [paths.SUMMARY]
            if config["plan"]["target_rps"] and config["plan"]["scale"] == "instances"
            else []
        ),
        accuracy=lambda w: [
            paths.served("accuracy", model, fmt, w.device)
            for model, fmt in passed_formats()
        ],
    output:
        repository=directory(paths.deploy_dir()),
        archive=report(
            paths.deploy_archive(),
            caption="../report/deploy.rst",
            category="Deploy",
            labels={"device": "{device}"},
        ),
    log:
        "logs/deploy/{device}.log",
    conda:
        "../../envs/triton.yaml"
    params:
        entries=deploy_entries,
        triton=config["triton"],
    script:
        "../scripts/deploy.py"
