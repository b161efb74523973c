from deploysnake import job
from deploysnake.measuring import workload
from deploysnake.sources.description import load_settings


def main(sm):
    settings = sm.params.settings
    workload.prepare_input_data(
        load_settings(settings),
        settings["params"],
        sm.params.samples,
        sm.output[0],
        unbatched=sm.params.unbatched,
        input_data=sm.params.input_data,
    )


job.run(snakemake, main)
