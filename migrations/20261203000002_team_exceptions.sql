-- Exceptions to the address policy that the platform admin made for a team: ranges its
-- namespaces may use although the installation denies them (CIDR text, validated by the
-- API).
ALTER TABLE teams ADD COLUMN allowed_cidrs text[] NOT NULL DEFAULT '{}';
