from deploysnake import gate, job, summary


def main(sm):
    current = summary.read(sm.input.summary)
    baseline = summary.read(sm.params.baseline) if sm.params.baseline else None
    doc = gate.evaluate(current, baseline, sm.params.gate, sm.params.baseline)
    gate.write(doc, sm.output[0])


job.run(snakemake, main)
