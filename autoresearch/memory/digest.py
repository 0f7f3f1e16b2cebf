def build_digest(entries, program, budget_tokens=2000):
    return ""
