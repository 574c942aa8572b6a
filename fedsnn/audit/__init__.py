"""The in-line audit: what the curious server observes, the attack queue, the auditor that scores
reconstructions against ground truth it loads itself, and the run report."""
