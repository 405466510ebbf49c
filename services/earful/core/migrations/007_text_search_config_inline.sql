-- earful_text_search_config, the same mapping written so PostgreSQL can inline it.
--
-- Version 002 cast the CASE's text result to regconfig. That cast looks the name up in the
-- catalog (a STABLE function), so PostgreSQL did not inline this IMMUTABLE function: every row
-- written ran it as a separate SQL function call, about as costly as the English stemming itself
-- (~7 of ~17 ms per 1,000 rows for the tsvector of `mentions.tsv`). With each branch a regconfig
-- constant the body is immutable and is inlined into the generated column and into search
-- queries. Every code still maps to the same configuration, so stored tsv values stay valid.
CREATE OR REPLACE FUNCTION earful_text_search_config(lang text) RETURNS regconfig
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE lang
        WHEN 'ar' THEN 'pg_catalog.arabic'::regconfig     WHEN 'hy' THEN 'pg_catalog.armenian'::regconfig
        WHEN 'eu' THEN 'pg_catalog.basque'::regconfig     WHEN 'ca' THEN 'pg_catalog.catalan'::regconfig
        WHEN 'da' THEN 'pg_catalog.danish'::regconfig     WHEN 'nl' THEN 'pg_catalog.dutch'::regconfig
        WHEN 'en' THEN 'pg_catalog.english'::regconfig    WHEN 'fi' THEN 'pg_catalog.finnish'::regconfig
        WHEN 'fr' THEN 'pg_catalog.french'::regconfig     WHEN 'de' THEN 'pg_catalog.german'::regconfig
        WHEN 'el' THEN 'pg_catalog.greek'::regconfig      WHEN 'hi' THEN 'pg_catalog.hindi'::regconfig
        WHEN 'hu' THEN 'pg_catalog.hungarian'::regconfig  WHEN 'id' THEN 'pg_catalog.indonesian'::regconfig
        WHEN 'ga' THEN 'pg_catalog.irish'::regconfig      WHEN 'it' THEN 'pg_catalog.italian'::regconfig
        WHEN 'lt' THEN 'pg_catalog.lithuanian'::regconfig WHEN 'ne' THEN 'pg_catalog.nepali'::regconfig
        WHEN 'no' THEN 'pg_catalog.norwegian'::regconfig  WHEN 'nb' THEN 'pg_catalog.norwegian'::regconfig
        WHEN 'nn' THEN 'pg_catalog.norwegian'::regconfig  WHEN 'pt' THEN 'pg_catalog.portuguese'::regconfig
        WHEN 'ro' THEN 'pg_catalog.romanian'::regconfig   WHEN 'ru' THEN 'pg_catalog.russian'::regconfig
        WHEN 'sr' THEN 'pg_catalog.serbian'::regconfig    WHEN 'es' THEN 'pg_catalog.spanish'::regconfig
        WHEN 'sv' THEN 'pg_catalog.swedish'::regconfig    WHEN 'ta' THEN 'pg_catalog.tamil'::regconfig
        WHEN 'tr' THEN 'pg_catalog.turkish'::regconfig    WHEN 'yi' THEN 'pg_catalog.yiddish'::regconfig
        ELSE 'pg_catalog.simple'::regconfig END
$$;
