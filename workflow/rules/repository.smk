rule triton_write_repository:
    input:
        artifact=artifact,
        io="results/export/{model}/{format}/io.json",
        code=package_file("repository"),
    output:
        directory("results/repository/{model}/{format}/{device}"),
    log:
        "logs/repository/{model}/{format}/{device}.log",
    conda:
        "../../envs/triton.yaml"
    params:
        triton=config["triton"],
        flavour=SERVER_FLAVOUR,
    script:
        "../scripts/repository.py"
