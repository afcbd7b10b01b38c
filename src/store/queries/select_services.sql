-- A page of every namespace with a selector that requires labels: the GIN index on
-- labels finds the candidates, which are then sorted (see select_services_in_namespace).
SELECT uid, namespace, name,
       labels AS "labels: Json<BTreeMap<String, String>>",
       annotations AS "annotations: Json<BTreeMap<String, String>>",
       spec AS "spec: Json<ExternalServiceSpec>",
       generation, resource_version, created_at,
       origin, mirrored_generation, mirror_error,
       status AS "status: Json<ExternalServiceStatus>"
FROM external_services
WHERE (namespace, name) >= ($1, $2) AND (namespace, name) <> ($1, $2)
  AND labels @> $3::jsonb
  AND labels ?& $4::text[]
  AND NOT labels ?| $5::text[]
  AND NOT labels @> ANY($6::jsonb[])
  AND ($7::jsonb IS NULL OR labels_match(labels, $7))
ORDER BY namespace, name
LIMIT $8
