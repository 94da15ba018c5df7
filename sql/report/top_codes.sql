{#- The {{ limit }} codes of {{ table }}.{{ column }} with the most distinct patients (ties: more
    events first, then the code), with their events. -#}
SELECT code, patients, events
FROM (
    SELECT {{ column }} AS code, COUNT(DISTINCT patient_id) AS patients, COUNT(*) AS events
    FROM {{ table }}
    WHERE {{ column }} IS NOT NULL
    GROUP BY {{ column }}
) AS c
ORDER BY patients DESC, events DESC, code
LIMIT {{ limit }}
