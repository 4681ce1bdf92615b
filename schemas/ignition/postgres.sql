-- Ignition (8.1 / 8.3) SQL tag historian: reference schema on PostgreSQL.
--
-- Source: /work/shared/ref/ignition.md, built from the Inductive Automation docs
-- ("Ignition Database Table Reference", 8.1 and 8.3) and a public pg_dump of an
-- Ignition historian database (PG 13.3).
--   CONFIRMED (docs + pg_dump): table and column names, column types, the serial
--     ids (sequence <table>_id_seq, DEFAULT nextval), the primary keys
--     (<table>_pkey; data tables PRIMARY KEY (tagid, t_stamp)), the index names,
--     times as bigint milliseconds since the Unix epoch (UTC), the partition
--     naming sqlt_data_<drvid>_<yyyy>_<mm>.
--   INFERRED: the exact DDL text Ignition sends (case of SERIAL, inline vs.
--     table-level PRIMARY KEY, identifier quoting). Ignition is closed source;
--     only the resulting catalog is confirmed. It sends CREATE TABLE / CREATE
--     INDEX without IF NOT EXISTS, after checking that the table is missing.

-- Gateway/provider pairs; the id is the <drvid> in data table names.
CREATE TABLE sqlth_drv (
  id serial PRIMARY KEY,
  name varchar(255),          -- gateway system name
  provider varchar(255)       -- tag provider
);

-- Tag groups (scan classes).
CREATE TABLE sqlth_scinfo (
  id serial PRIMARY KEY,
  scname varchar(255),
  drvid integer
);

-- Tag group executions: end_time is advanced while the group runs; gaps mark
-- downtime. No primary key.
CREATE TABLE sqlth_sce (
  scid integer,
  start_time bigint,
  end_time bigint,
  rate integer
);
CREATE INDEX sqlth_scestart_timendx ON sqlth_sce (start_time);
CREATE INDEX sqlth_sceend_timendx ON sqlth_sce (end_time);

-- Tags. datatype: 0 Int, 1 Float, 2 String, 3 DateTime. querymode: 0 Discrete,
-- 1 old analog, 3 analog compressed. A changed path/datatype/group adds a new
-- row and sets retired (ms) on the old one.
CREATE TABLE sqlth_te (
  id serial PRIMARY KEY,
  tagpath varchar(255),
  scid integer,
  datatype integer,
  querymode integer,
  created bigint,
  retired bigint
);
CREATE INDEX sqlth_tetagpathndx ON sqlth_te (tagpath);

-- One row per data partition table. No primary key, no index.
CREATE TABLE sqlth_partitions (
  pname varchar(255),
  drvid integer,
  start_time bigint,
  end_time bigint,
  blocksize integer,
  flags integer               -- 1 = no seed queries (third-party guides)
);

CREATE TABLE sqlth_annotations (
  id serial PRIMARY KEY,
  tagid integer,
  start_time bigint,
  end_time bigint,
  type varchar(255),
  datavalue varchar(255),
  annotationid varchar(255)
);
CREATE INDEX sqlthannotationsstarttimendx ON sqlth_annotations (start_time);
CREATE INDEX sqlth_annotationsend_timendx ON sqlth_annotations (end_time);

-- Data: one table per partition, monthly sqlt_data_<drvid>_<yyyy>_<mm> (UTC
-- months). Only the value column matching the tag's datatype is non-null.
-- dataintegrity: 192 = Good; 0/500/600 also seen.
CREATE TABLE sqlt_data_1_2026_11 (
  tagid integer NOT NULL,
  intvalue bigint,
  floatvalue double precision,
  stringvalue character varying(255),
  datevalue timestamp without time zone,
  dataintegrity integer,
  t_stamp bigint NOT NULL,
  PRIMARY KEY (tagid, t_stamp)          -- named sqlt_data_1_2026_11_pkey
);
CREATE INDEX sqlt_data_1_2026_11t_stampndx ON sqlt_data_1_2026_11 (t_stamp);

-- Same shape, same <table>_pkey and <table>t_stampndx:
--   * daily partitions sqlt_data_<drvid>_<yyyymmdd>, e.g. sqlt_data_1_20261201
--     (CONFIRMED by an 8.1 log "Created Tag history partition sqlt_data_1_20210314");
--   * sub-day partitions sqlt_data_<drvid>_<epoch-seconds> (CONFIRMED, KB);
--   * sqlth_1_data, the single table used when partitioning is off (CONFIRMED;
--     pg_dump shows sqlth_1_data_pkey and sqlth_1_datat_stampndx).
