from deploysnake import deploy, job, summary


def main(sm):
    # the summary of this device's entries travels with the deployed repository
    doc = summary.for_device(summary.read(sm.input.summary), sm.wildcards.device)
    summary.validate(doc)
    deploy.write_release(sm.input.archive, doc, sm.output[0])


job.run(snakemake, main)
