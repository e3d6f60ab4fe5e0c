"""From saved artifacts to decisions: reading runs and results, the decision rules (two-SE and
paired), Kendall's tau over a population, the study design and tables, REPORT.md and STUDY.md."""
