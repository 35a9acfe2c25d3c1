"""The database schema: tables with natural primary keys, and the documented analyst views.

Views show analysts the numbers the pipeline decided with; they decide nothing themselves.
"""

SCHEMA_VERSION = 3

MIGRATIONS: dict[int, list[str]] = {
    2: [
        "ALTER TABLE scoring_calls ADD COLUMN IF NOT EXISTS error VARCHAR",
        "ALTER TABLE studies ADD COLUMN IF NOT EXISTS sandbox VARCHAR",
        "ALTER TABLE trials ADD COLUMN IF NOT EXISTS program_cpu_seconds DOUBLE",
        "ALTER TABLE scoring_calls ADD COLUMN IF NOT EXISTS charge INTEGER DEFAULT 1",
    ],
    3: [
        "ALTER TABLE studies ADD COLUMN IF NOT EXISTS generalisation_verdict VARCHAR",
        "ALTER TABLE studies ADD COLUMN IF NOT EXISTS production_verdict VARCHAR",
        "ALTER TABLE studies ADD COLUMN IF NOT EXISTS design VARCHAR",
        "ALTER TABLE gap_results ADD COLUMN IF NOT EXISTS look INTEGER",
        "ALTER TABLE gap_results ADD COLUMN IF NOT EXISTS stop_reason VARCHAR",
        "ALTER TABLE gap_results ADD COLUMN IF NOT EXISTS rho_ci_set VARCHAR",
    ],
}
"""What brings a database from the version before to this one (new tables are created anyway):
schema 2 added `method_programs`, `failed_trials`, the error and the charge of a scoring call, a
program trial's CPU seconds and how the study's machine isolates method programs; schema 3 the
two headline verdicts, the verdict design, each task's last look and stop reason and a Fieller
set that is a union of pieces."""

TABLES: dict[str, str] = {
    "schema_info": """
        version INTEGER PRIMARY KEY
    """,
    "studies": """
        study_id VARCHAR PRIMARY KEY,
        name VARCHAR NOT NULL,
        profile VARCHAR NOT NULL,
        seed INTEGER NOT NULL,
        agent_backend VARCHAR NOT NULL,
        config_json VARCHAR NOT NULL,
        config_hash VARCHAR NOT NULL,
        code_version VARCHAR NOT NULL,
        dataset_sha256s VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        overall_verdict VARCHAR,
        error VARCHAR,
        hacking_flags VARCHAR,
        sandbox VARCHAR,
        generalisation_verdict VARCHAR,
        production_verdict VARCHAR,
        design VARCHAR,
        started_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
        finished_at TIMESTAMPTZ
    """,
    "tasks": """
        study_id VARCHAR NOT NULL,
        task VARCHAR NOT NULL,
        role VARCHAR NOT NULL,
        task_hash VARCHAR NOT NULL,
        spec_json VARCHAR NOT NULL,
        dataset VARCHAR NOT NULL,
        dataset_sha256 VARCHAR NOT NULL,
        n_rows INTEGER NOT NULL,
        n_classes INTEGER NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (study_id, task)
    """,
    "agents": """
        study_id VARCHAR NOT NULL,
        agent_id INTEGER NOT NULL,
        direction VARCHAR NOT NULL,
        direction_json VARCHAR NOT NULL,
        backend VARCHAR NOT NULL,
        sampler_seed BIGINT NOT NULL,
        scoring_budget INTEGER NOT NULL,
        stop_reason VARCHAR,
        stopped_round INTEGER,
        created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (study_id, agent_id)
    """,
    "trials": """
        study_id VARCHAR NOT NULL,
        phase VARCHAR NOT NULL DEFAULT 'adhoc',
        task VARCHAR NOT NULL,
        task_hash VARCHAR NOT NULL,
        method_hash VARCHAR NOT NULL,
        method_json VARCHAR NOT NULL,
        seed INTEGER NOT NULL,
        weak_acc_dev DOUBLE NOT NULL,
        weak_acc_test DOUBLE NOT NULL,
        ceiling_acc_dev DOUBLE NOT NULL,
        ceiling_acc_test DOUBLE NOT NULL,
        student_acc_dev DOUBLE NOT NULL,
        student_acc_test DOUBLE NOT NULL,
        student_top_class_share DOUBLE NOT NULL,
        pgr_dev DOUBLE,
        pgr_test DOUBLE,
        wall_seconds DOUBLE NOT NULL,
        teacher_cached BOOLEAN NOT NULL,
        dataset_sha256 VARCHAR NOT NULL,
        code_version VARCHAR NOT NULL,
        program_cpu_seconds DOUBLE,
        created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (study_id, task_hash, method_hash, seed)
    """,
    "method_programs": """
        program_id VARCHAR PRIMARY KEY,
        name VARCHAR NOT NULL,
        source VARCHAR NOT NULL,
        params_json VARCHAR NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
    """,
    "failed_trials": """
        study_id VARCHAR NOT NULL,
        phase VARCHAR NOT NULL,
        task VARCHAR NOT NULL,
        task_hash VARCHAR NOT NULL,
        method_hash VARCHAR NOT NULL,
        method_json VARCHAR NOT NULL,
        seed INTEGER NOT NULL,
        error VARCHAR NOT NULL,
        cpu_seconds DOUBLE NOT NULL,
        wall_seconds DOUBLE NOT NULL,
        code_version VARCHAR NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (study_id, task_hash, method_hash, seed)
    """,
    "scoring_calls": """
        study_id VARCHAR NOT NULL,
        agent_id INTEGER NOT NULL,
        round INTEGER NOT NULL,
        method_hash VARCHAR NOT NULL,
        method_json VARCHAR NOT NULL,
        family VARCHAR NOT NULL,
        seeds VARCHAR NOT NULL,
        dev_pgr DOUBLE,
        budget_left INTEGER NOT NULL,
        error VARCHAR,
        charge INTEGER NOT NULL DEFAULT 1,
        created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (study_id, agent_id, round, method_hash)
    """,
    "forum_posts": """
        study_id VARCHAR NOT NULL,
        round INTEGER NOT NULL,
        agent_id INTEGER NOT NULL,
        method_hash VARCHAR NOT NULL,
        method_json VARCHAR NOT NULL,
        dev_pgr DOUBLE,
        n_seeds INTEGER NOT NULL,
        rationale VARCHAR NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (study_id, round, agent_id)
    """,
    "transfer_trials": """
        study_id VARCHAR NOT NULL,
        target VARCHAR NOT NULL,
        role VARCHAR NOT NULL,
        task_hash VARCHAR NOT NULL,
        seed INTEGER NOT NULL,
        baseline_method_hash VARCHAR NOT NULL,
        winner_method_hash VARCHAR NOT NULL,
        weak_acc DOUBLE NOT NULL,
        ceiling_acc DOUBLE NOT NULL,
        baseline_acc DOUBLE NOT NULL,
        winner_acc DOUBLE NOT NULL,
        baseline_pgr DOUBLE,
        winner_pgr DOUBLE,
        created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (study_id, target, seed)
    """,
    "gap_results": """
        study_id VARCHAR NOT NULL,
        target VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        n INTEGER,
        delta DOUBLE,
        ci95_low DOUBLE,
        ci95_high DOUBLE,
        ci_adj_low DOUBLE,
        ci_adj_high DOUBLE,
        p_value DOUBLE,
        p_holm DOUBLE,
        rho DOUBLE,
        rho_ci_low DOUBLE,
        rho_ci_high DOUBLE,
        rho_ci_kind VARCHAR,
        margin_upper DOUBLE,
        naive_estimate DOUBLE,
        verdict VARCHAR,
        seeds_needed INTEGER,
        flags VARCHAR NOT NULL,
        reasons VARCHAR NOT NULL,
        detail_json VARCHAR NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
        look INTEGER,
        stop_reason VARCHAR,
        rho_ci_set VARCHAR,
        PRIMARY KEY (study_id, target)
    """,
    "agent_messages": """
        study_id VARCHAR NOT NULL,
        agent_id INTEGER NOT NULL,
        round INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        role VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        content_json VARCHAR NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (study_id, agent_id, seq)
    """,
    "llm_calls": """
        study_id VARCHAR NOT NULL,
        agent_id INTEGER NOT NULL,
        round INTEGER NOT NULL,
        turn INTEGER NOT NULL,
        model VARCHAR NOT NULL,
        input_tokens BIGINT NOT NULL,
        output_tokens BIGINT NOT NULL,
        cache_creation_input_tokens BIGINT NOT NULL,
        cache_read_input_tokens BIGINT NOT NULL,
        latency_seconds DOUBLE NOT NULL,
        stop_reason VARCHAR,
        usd DOUBLE NOT NULL,
        attempts INTEGER NOT NULL,
        request_id VARCHAR,
        created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (study_id, agent_id, turn)
    """,
    "quality_checks": """
        study_id VARCHAR NOT NULL,
        stage VARCHAR NOT NULL,
        batch VARCHAR NOT NULL,
        expectation VARCHAR NOT NULL,
        column_name VARCHAR,
        critical BOOLEAN NOT NULL,
        success BOOLEAN NOT NULL,
        element_count BIGINT,
        unexpected_count BIGINT,
        detail VARCHAR NOT NULL,
        checked_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (study_id, stage, batch, expectation)
    """,
}

VIEWS: dict[str, str] = {
    "leaderboard": """
        WITH lab AS (
            SELECT study_id, task_hash FROM tasks WHERE role = 'lab'
        ),
        scored AS (
            SELECT study_id, method_hash, any_value(family) AS family,
                   array_to_string(list_sort(list_distinct(list(agent_id))), ',') AS proposed_by,
                   min(round) AS first_round
            FROM scoring_calls GROUP BY study_id, method_hash
        ),
        measured AS (
            SELECT t.study_id, t.method_hash, any_value(t.method_json) AS method_json,
                   count(t.pgr_dev) AS n_seeds, avg(t.pgr_dev ORDER BY t.seed) AS mean_dev_pgr,
                   stddev_samp(t.pgr_dev ORDER BY t.seed) / sqrt(count(t.pgr_dev)) AS se_dev_pgr
            FROM trials t JOIN lab USING (study_id, task_hash)
            WHERE t.phase = 'search' AND t.pgr_dev IS NOT NULL
            GROUP BY t.study_id, t.method_hash
        ),
        ranked AS (
            SELECT m.*, c.family, c.proposed_by, c.first_round,
                   m.n_seeds >= CAST(json_extract(s.config_json, '$.quick_seeds') AS INTEGER)
                       AS min_seeds_met,
                   m.mean_dev_pgr > 1.2 AS leak_suspected  -- hacking.IMPLAUSIBLE_PGR
            FROM measured m
            JOIN scored c USING (study_id, method_hash)
            JOIN studies s USING (study_id)
        )
        SELECT study_id,
               CAST(row_number() OVER (
                   PARTITION BY study_id
                   ORDER BY min_seeds_met DESC, leak_suspected, mean_dev_pgr DESC, method_hash
               ) AS BIGINT) AS rank,
               method_hash, method_json, family, n_seeds, mean_dev_pgr, se_dev_pgr,
               proposed_by, first_round, min_seeds_met, leak_suspected
        FROM ranked
    """,
    "cost_per_agent": """
        WITH calls AS (
            SELECT study_id, agent_id, count(*) AS api_calls,
                   CAST(sum(input_tokens) AS BIGINT) AS input_tokens,
                   CAST(sum(output_tokens) AS BIGINT) AS output_tokens,
                   CAST(sum(cache_creation_input_tokens) AS BIGINT) AS cache_write_tokens,
                   CAST(sum(cache_read_input_tokens) AS BIGINT) AS cache_read_tokens,
                   sum(usd) AS usd, sum(latency_seconds) AS api_seconds
            FROM llm_calls GROUP BY study_id, agent_id
        ),
        experiments AS (
            SELECT study_id, agent_id, count(*) AS scoring_calls
            FROM scoring_calls GROUP BY study_id, agent_id
        ),
        experiment_time AS (
            -- the wall time of the trials behind each of the agent's scoring calls
            SELECT c.study_id, c.agent_id, sum(t.wall_seconds) AS seconds
            FROM scoring_calls c
            CROSS JOIN unnest(CAST(c.seeds AS INTEGER[])) AS s(seed)
            JOIN tasks k ON k.study_id = c.study_id AND k.role = 'lab'
            JOIN trials t ON t.study_id = c.study_id AND t.task_hash = k.task_hash
                 AND t.method_hash = c.method_hash AND t.seed = s.seed
            GROUP BY c.study_id, c.agent_id
        ),
        hours AS (
            SELECT c.study_id, c.agent_id,
                   (c.api_seconds + coalesce(x.seconds, 0)) / 3600.0 AS agent_hours
            FROM calls c LEFT JOIN experiment_time x USING (study_id, agent_id)
        )
        SELECT a.study_id, a.agent_id, a.direction, a.backend,
               coalesce(c.api_calls, 0) AS api_calls,
               coalesce(c.input_tokens, 0) AS input_tokens,
               coalesce(c.output_tokens, 0) AS output_tokens,
               coalesce(c.cache_write_tokens, 0) AS cache_write_tokens,
               coalesce(c.cache_read_tokens, 0) AS cache_read_tokens,
               coalesce(c.usd, 0) AS usd,
               coalesce(e.scoring_calls, 0) AS experiments,
               h.agent_hours,
               c.usd / nullif(h.agent_hours, 0) AS usd_per_agent_hour,
               a.stop_reason
        FROM agents a
        LEFT JOIN calls c USING (study_id, agent_id)
        LEFT JOIN experiments e USING (study_id, agent_id)
        LEFT JOIN hours h USING (study_id, agent_id)
    """,
    "verdicts": """
        SELECT s.name, g.study_id, s.started_at, g.kind, g.target,
               json_extract_string(g.detail_json, '$.role') AS role,
               g.n AS seeds, g.delta AS effect, g.ci95_low, g.ci95_high,
               g.ci_adj_low, g.ci_adj_high, g.rho, g.rho_ci_low, g.rho_ci_high,
               g.rho_ci_set, g.naive_estimate, g.verdict, g.seeds_needed, g.look,
               g.stop_reason, s.generalisation_verdict, s.production_verdict, g.flags, g.reasons
        FROM gap_results g JOIN studies s USING (study_id)
    """,
    "gap_trend": """
        WITH lab AS (
            SELECT study_id, n AS lab_seeds, delta AS lab_effect, ci95_low AS lab_ci95_low,
                   ci95_high AS lab_ci95_high, naive_estimate AS lab_naive_effect
            FROM gap_results WHERE kind = 'lab'
        ),
        targets AS (
            SELECT study_id, target, json_extract_string(detail_json, '$.role') AS role,
                   n AS seeds, delta AS effect, ci95_low, ci95_high, rho, verdict, stop_reason
            FROM gap_results WHERE kind = 'target'
        )
        SELECT s.name, s.study_id, s.started_at, s.finished_at, s.status, s.overall_verdict,
               s.generalisation_verdict, s.production_verdict,
               CAST(dense_rank() OVER (
                   PARTITION BY s.name ORDER BY s.started_at, s.study_id
               ) AS BIGINT) AS run_index,
               CAST(json_extract(s.config_json, '$.rho_min') AS DOUBLE) AS rho_min,
               l.lab_seeds, l.lab_effect, l.lab_ci95_low, l.lab_ci95_high, l.lab_naive_effect,
               t.target, t.role, t.seeds, t.effect, t.ci95_low, t.ci95_high, t.rho, t.verdict,
               t.stop_reason
        FROM studies s
        LEFT JOIN lab l USING (study_id)
        LEFT JOIN targets t USING (study_id)
    """,
    "agent_diversity": """
        WITH per_agent AS (
            SELECT study_id, agent_id,
                   count(*) AS scoring_calls,
                   count(DISTINCT family) AS families_tried,
                   string_agg(DISTINCT family, ', ' ORDER BY family) AS families,
                   max(dev_pgr) AS best_dev_pgr,
                   first(family ORDER BY dev_pgr DESC NULLS LAST, round, method_hash)
                       AS top_family
            FROM scoring_calls GROUP BY study_id, agent_id
        ),
        per_study AS (
            SELECT study_id, count(DISTINCT family) AS families_in_study
            FROM scoring_calls GROUP BY study_id
        ),
        top_counts AS (
            SELECT study_id, top_family, count(*) AS n_agents, max(best_dev_pgr) AS best
            FROM per_agent GROUP BY study_id, top_family
        ),
        study_top AS (
            SELECT study_id,
                   first(top_family ORDER BY n_agents DESC, best DESC NULLS LAST, top_family)
                       AS study_top_family,
                   max(n_agents) AS agents_sharing_top_family,
                   sum(n_agents) AS agents_in_study
            FROM top_counts GROUP BY study_id
        )
        SELECT p.study_id, p.agent_id, a.direction, p.scoring_calls, p.families_tried,
               p.families, p.best_dev_pgr, p.top_family, s.families_in_study,
               CAST(t.agents_in_study AS BIGINT) AS agents_in_study, t.study_top_family,
               t.agents_sharing_top_family
        FROM per_agent p
        JOIN per_study s USING (study_id)
        JOIN study_top t USING (study_id)
        LEFT JOIN agents a USING (study_id, agent_id)
    """,
}
