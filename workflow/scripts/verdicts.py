from deploysnake import correctness, job


def main(sm):
    correctness.collect(sm.input.verdicts, sm.output[0])


job.run(snakemake, main)
