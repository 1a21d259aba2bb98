"""Definitions: authoring classes (states, methods, transitions, events, access rules) and
pipelines (stages, columns, requirements, checklists, automations, templates) as rows."""
