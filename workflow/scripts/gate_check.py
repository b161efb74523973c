from deploysnake import gate, job


def main(sm):
    gate.check(sm.input.gate, sm.input.report, sm.output[0])


job.run(snakemake, main)
