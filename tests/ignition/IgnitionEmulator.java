/*
 * IgnitionEmulator: runs the SQL traffic of Inductive Automation Ignition's SQL tag historian (8.1 / 8.3,
 * POSTGRES translator, PgJDBC driver) through its whole life cycle and checks every answer exactly.
 *
 * Evidence: /work/shared/ref/ignition.md. Ignition is closed source, so the statement texts come from IA logs,
 * IA staff forum posts and pg_dumps:
 *   CONFIRMED shapes: the partition lookup (8.1 DEBUG log), the raw range query with an OR-chain of tags and the
 *     seed query (IA staff, 7.2), the tables/columns/types/keys/index names (IA table reference + pg_dump), the
 *     partition names, the pool's "SELECT 1" validationQuery (8.3 defaults), DROP TABLE pruning of partitions.
 *   INFERRED shapes (marked "INFERRED" where they are sent): the DDL text, the INSERT column order, how new ids
 *     are read back (all PgJDBC ways are exercised), the UPDATE/DELETE texts for sqlth_sce/sqlth_te/
 *     sqlth_partitions, IN-lists as an alternative to OR-chains, the metadata and annotation SELECTs.
 * PgJDBC behaviour (batches in one Sync, typed nulls, named statements and binary results after 5 executions,
 * DatabaseMetaData SQL) comes from the driver itself: this program only uses the JDBC API with default settings.
 *
 * Usage: java -cp /usr/share/java/postgresql.jar tests/ignition/IgnitionEmulator.java URL USER PASSWORD MODE
 *   MODE strict: PostgreSQL semantics. A re-sent batch holding an already-stored (tagid, t_stamp) fails with
 *                SQLSTATE 23505 and none of its rows are stored (Ignition then quarantines the batch).
 *   MODE dedup:  deltagate's default for historian data tables. The re-sent batch succeeds, each (tagid, t_stamp)
 *                is stored once (the first stored value is kept) and the batch's new rows are stored.
 * The program keeps an in-memory model of the acknowledged rows and compares each query result with it.
 * Output: one progress line per phase, then "IGNITION EMULATOR OK mode=<MODE> rows=<n>" (exit 0) or
 * "IGNITION EMULATOR FAILED: <phase>: <expected vs got>" (exit 1). It first drops its own tables, so it can be
 * re-run on the same database.
 */
import java.sql.*;
import java.time.*;
import java.util.*;
import java.util.concurrent.*;
import java.util.stream.*;

public class IgnitionEmulator {
    // ------------------------------------------------------------------------------------------------ constants
    static final int POOL_SIZE = 4;                  // historian connections (+1 metadata connection)
    static final int TAG_COUNT = 300;
    static final int BATCH_SIZE = 256;               // rows per store-and-forward write
    static final int MEAN_STEP_MINUTES = 375;        // ~350 values per tag over 3 months: ~105k rows
    static final int READ_REPEATS = 6;               // > PgJDBC prepareThreshold (5): named statements, binary rows
    static final long SEED = 20261101L;
    static final YearMonth[] MONTHS = {YearMonth.of(2026, 9), YearMonth.of(2026, 10), YearMonth.of(2026, 11)};
    static final LocalDate DAILY_DAY = LocalDate.of(2026, 12, 1);
    static final String SINGLE_TABLE = "sqlth_1_data";               // used when partitioning is off
    static final String GATEWAY = "gateway", PROVIDER = "default", TAG_GROUP = "default";
    static final int INT = 0, FLOAT = 1, STRING = 2, DATETIME = 3;    // sqlth_te.datatype
    static final String[] TYPE_NAMES = {"int", "float", "string", "date"};
    static final int QUERYMODE = 3;                  // analog compressed
    static final int RATE_MS = 1000;
    static final int GOOD = 192;
    static final int[] NOT_GOOD = {0, 500, 600};
    static final long HOUR = 3_600_000L, DAY = 24 * HOUR;
    static final long REGISTERED_AT = ms(LocalDate.of(2026, 8, 31)) + 23 * HOUR;   // simulated gateway clock
    static final int RETIRED_TAG = 7;                // index of the tag whose datatype changes in maintenance
    static final List<String> METADATA_TABLES =
            List.of("sqlth_drv", "sqlth_scinfo", "sqlth_sce", "sqlth_te", "sqlth_partitions", "sqlth_annotations");
    static final String[] STRINGS = {"RUNNING", "STOPPED", "", "Pump 3 – fault: overtemp 95°C", "x".repeat(255)};

    // ------------------------------------------------------------------------------------------------ SQL texts
    static final String INSERT_COLUMNS =
            "\"tagid\",\"intvalue\",\"floatvalue\",\"stringvalue\",\"datevalue\",\"dataintegrity\",\"t_stamp\"";
    static final String SELECT_COLUMNS =
            "\"tagid\",\"intvalue\",\"floatvalue\",\"stringvalue\",\"datevalue\",\"t_stamp\",\"dataintegrity\"";
    static final String PARTITION_LOOKUP = "SELECT \"pname\", \"start_time\", \"end_time\", \"blocksize\", \"flags\""
            + " FROM sqlth_partitions WHERE \"drvid\"=? and \"start_time\"<=? and \"end_time\">=?"
            + " and (\"blocksize\" is NULL or \"blocksize\"<=?) ORDER BY \"start_time\"";
    // INFERRED from here on
    static final String PARTITION_INSERT = "INSERT INTO sqlth_partitions"
            + " (\"pname\",\"drvid\",\"start_time\",\"end_time\",\"blocksize\",\"flags\") VALUES (?,?,?,?,?,?)";
    static final String PARTITION_DELETE = "DELETE FROM sqlth_partitions WHERE \"pname\"=?";
    static final String DRV_INSERT = "INSERT INTO sqlth_drv (\"name\",\"provider\") VALUES (?,?)";
    static final String DRV_ALL = "SELECT \"id\",\"name\",\"provider\" FROM sqlth_drv";
    static final String SCINFO_INSERT = "INSERT INTO sqlth_scinfo (\"scname\",\"drvid\") VALUES (?,?)";
    static final String SCINFO_ALL = "SELECT \"id\",\"scname\",\"drvid\" FROM sqlth_scinfo";
    static final String SCE_INSERT = "INSERT INTO sqlth_sce (\"scid\",\"start_time\",\"end_time\",\"rate\") VALUES (?,?,?,?)";
    static final String SCE_UPDATE = "UPDATE sqlth_sce SET \"end_time\"=? WHERE \"scid\"=? AND \"start_time\"=?";
    static final String SCE_RANGE = "SELECT \"scid\",\"start_time\",\"end_time\",\"rate\" FROM sqlth_sce"
            + " WHERE \"start_time\"<=? and \"end_time\">=? ORDER BY \"start_time\"";
    static final String TE_INSERT =
            "INSERT INTO sqlth_te (\"tagpath\",\"scid\",\"datatype\",\"querymode\",\"created\") VALUES (?,?,?,?,?)";
    static final String TE_RETIRE = "UPDATE sqlth_te SET \"retired\"=? WHERE \"id\"=?";
    static final String TE_ALL =
            "SELECT \"id\",\"tagpath\",\"scid\",\"datatype\",\"querymode\",\"created\",\"retired\" FROM sqlth_te";
    static final String TE_BY_PATH = "SELECT \"id\",\"datatype\" FROM sqlth_te WHERE \"tagpath\"=? and \"retired\" IS NULL";
    static final String ANNOTATION_INSERT = "INSERT INTO sqlth_annotations"
            + " (\"tagid\",\"start_time\",\"end_time\",\"type\",\"datavalue\",\"annotationid\") VALUES (?,?,?,?,?,?)";
    static final String ANNOTATION_RANGE = "SELECT \"id\",\"tagid\",\"start_time\",\"end_time\",\"type\",\"datavalue\","
            + "\"annotationid\" FROM sqlth_annotations WHERE \"start_time\"<=? and \"end_time\">=? ORDER BY \"start_time\"";

    static String insertSql(String table) {
        return "INSERT INTO " + table + " (" + INSERT_COLUMNS + ") VALUES (?,?,?,?,?,?,?)";
    }

    /** CONFIRMED (7.2): one query per partition, tags as an OR-chain. */
    static String rawOrSql(String table, int tags) {
        return "SELECT " + SELECT_COLUMNS + " FROM " + table + " WHERE \"t_stamp\">=? and \"t_stamp\"<=? and ("
                + String.join(" OR ", Collections.nCopies(tags, "\"tagid\"=?")) + ") ORDER BY \"t_stamp\" ASC";
    }

    /** INFERRED: the same with an IN-list. */
    static String rawInSql(String table, int tags) {
        return "SELECT " + SELECT_COLUMNS + " FROM " + table + " WHERE \"t_stamp\">=? and \"t_stamp\"<=? and \"tagid\" IN ("
                + String.join(",", Collections.nCopies(tags, "?")) + ") ORDER BY \"t_stamp\" ASC";
    }

    /** CONFIRMED (7.2): the seed (bounding) value, the last one before the start. */
    static String seedSql(String table) {
        return "SELECT " + SELECT_COLUMNS + " FROM " + table
                + " WHERE \"tagid\" IN (?) and \"t_stamp\"<? ORDER BY \"t_stamp\" DESC LIMIT 1";
    }

    static String monthTable(int drv, YearMonth ym) {
        return String.format("sqlt_data_%d_%04d_%02d", drv, ym.getYear(), ym.getMonthValue());
    }

    static String dayTable(int drv, LocalDate d) {
        return String.format("sqlt_data_%d_%04d%02d%02d", drv, d.getYear(), d.getMonthValue(), d.getDayOfMonth());
    }

    // ------------------------------------------------------------------------- expected catalog (DDL + metadata)
    record Col(String name, String typeName, int jdbcType, boolean notNull, String def) {
        String describe() { return describe(name, typeName, jdbcType, 255, notNull, def); }

        static String describe(String name, String typeName, int jdbcType, int size, boolean notNull, String def) {
            return name + " " + typeName + " jdbcType=" + jdbcType + ("varchar".equals(typeName) ? " size=" + size : "")
                    + (notNull ? " NOT NULL" : "") + (def != null ? " DEFAULT " + def : "");
        }
    }

    /** indexes: name -> column of the non-primary-key indexes. */
    record TableSpec(String name, String create, List<Col> cols, List<String> pk, Map<String, String> indexes) {}

    static Col serialId(String table) { return new Col("id", "serial", Types.INTEGER, true, "nextval('" + table + "_id_seq'::regclass)"); }
    static Col int4(String n) { return new Col(n, "int4", Types.INTEGER, false, null); }
    static Col int8(String n) { return new Col(n, "int8", Types.BIGINT, false, null); }
    static Col varchar(String n) { return new Col(n, "varchar", Types.VARCHAR, false, null); }

    /** INFERRED DDL text: inline "serial PRIMARY KEY" and, for sqlth_annotations, the table-level form. */
    static List<TableSpec> metadataSpecs() {
        return List.of(
                new TableSpec("sqlth_drv",
                        "CREATE TABLE sqlth_drv (\"id\" serial PRIMARY KEY, \"name\" varchar(255), \"provider\" varchar(255))",
                        List.of(serialId("sqlth_drv"), varchar("name"), varchar("provider")), List.of("id"), Map.of()),
                new TableSpec("sqlth_scinfo",
                        "CREATE TABLE sqlth_scinfo (\"id\" serial PRIMARY KEY, \"scname\" varchar(255), \"drvid\" integer)",
                        List.of(serialId("sqlth_scinfo"), varchar("scname"), int4("drvid")), List.of("id"), Map.of()),
                new TableSpec("sqlth_sce",
                        "CREATE TABLE sqlth_sce (\"scid\" integer, \"start_time\" bigint, \"end_time\" bigint, \"rate\" integer)",
                        List.of(int4("scid"), int8("start_time"), int8("end_time"), int4("rate")), List.of(),
                        Map.of("sqlth_scestart_timendx", "start_time", "sqlth_sceend_timendx", "end_time")),
                new TableSpec("sqlth_te",
                        "CREATE TABLE sqlth_te (\"id\" serial PRIMARY KEY, \"tagpath\" varchar(255), \"scid\" integer,"
                                + " \"datatype\" integer, \"querymode\" integer, \"created\" bigint, \"retired\" bigint)",
                        List.of(serialId("sqlth_te"), varchar("tagpath"), int4("scid"), int4("datatype"), int4("querymode"),
                                int8("created"), int8("retired")), List.of("id"), Map.of("sqlth_tetagpathndx", "tagpath")),
                new TableSpec("sqlth_partitions",
                        "CREATE TABLE sqlth_partitions (\"pname\" varchar(255), \"drvid\" integer, \"start_time\" bigint,"
                                + " \"end_time\" bigint, \"blocksize\" integer, \"flags\" integer)",
                        List.of(varchar("pname"), int4("drvid"), int8("start_time"), int8("end_time"), int4("blocksize"),
                                int4("flags")), List.of(), Map.of()),
                new TableSpec("sqlth_annotations",
                        "CREATE TABLE sqlth_annotations (\"id\" serial, \"tagid\" integer, \"start_time\" bigint,"
                                + " \"end_time\" bigint, \"type\" varchar(255), \"datavalue\" varchar(255),"
                                + " \"annotationid\" varchar(255), PRIMARY KEY (\"id\"))",
                        List.of(serialId("sqlth_annotations"), int4("tagid"), int8("start_time"), int8("end_time"),
                                varchar("type"), varchar("datavalue"), varchar("annotationid")), List.of("id"),
                        Map.of("sqlthannotationsstarttimendx", "start_time", "sqlth_annotationsend_timendx", "end_time")));
    }

    /** Data partitions, daily tables and sqlth_1_data share this shape (DDL text INFERRED, catalog CONFIRMED). */
    static TableSpec dataSpec(String t) {
        return new TableSpec(t, "CREATE TABLE " + t + " (\"tagid\" integer NOT NULL, \"intvalue\" bigint,"
                + " \"floatvalue\" double precision, \"stringvalue\" character varying(255),"
                + " \"datevalue\" timestamp without time zone, \"dataintegrity\" integer, \"t_stamp\" bigint NOT NULL,"
                + " PRIMARY KEY (\"tagid\",\"t_stamp\"))",
                List.of(new Col("tagid", "int4", Types.INTEGER, true, null), int8("intvalue"),
                        new Col("floatvalue", "float8", Types.DOUBLE, false, null), varchar("stringvalue"),
                        new Col("datevalue", "timestamp", Types.TIMESTAMP, false, null), int4("dataintegrity"),
                        new Col("t_stamp", "int8", Types.BIGINT, true, null)),
                List.of("tagid", "t_stamp"), Map.of(t + "t_stampndx", "t_stamp"));
    }

    // ------------------------------------------------------------------------------------------------ the model
    record Key(int tagid, long t) implements Comparable<Key> {
        public int compareTo(Key o) {
            int c = Long.compare(t, o.t);
            return c != 0 ? c : Integer.compare(tagid, o.tagid);
        }
    }

    record Row(int tagid, Long intValue, Double floatValue, String stringValue, Long dateValue, Integer quality, long t) {
        Key key() { return new Key(tagid, t); }

        public String toString() {
            String s = stringValue == null ? null
                    : stringValue.length() > 40 ? "'" + stringValue.substring(0, 20) + "...' (" + stringValue.length() + " chars)"
                    : "'" + stringValue + "'";
            return "(tagid=" + tagid + ", t_stamp=" + t + " " + Instant.ofEpochMilli(t) + ", intvalue=" + intValue
                    + ", floatvalue=" + floatValue + ", stringvalue=" + s + ", datevalue="
                    + (dateValue == null ? null : Instant.ofEpochMilli(dateValue)) + ", dataintegrity=" + quality + ")";
        }

        /** The same key with a different value, so a test can tell which of the two was kept. */
        Row changed() {
            return new Row(tagid, intValue == null ? null : intValue + 1, floatValue == null ? null : floatValue + 0.5,
                    stringValue == null ? null : stringValue.length() < 255 ? stringValue + "*" : "changed",
                    dateValue == null ? null : dateValue + 1000, quality, t);
        }
    }

    static final class Tag {
        int id;
        final String path;
        final int scid, datatype;
        final long created;
        Long retired;

        Tag(String path, int scid, int datatype, long created) {
            this.path = path; this.scid = scid; this.datatype = datatype; this.created = created;
        }

        String describe() { return id + "|" + path + "|" + scid + "|" + datatype + "|" + QUERYMODE + "|" + created + "|" + retired; }
    }

    record Partition(String pname, int drvid, long start, long end, Integer blocksize, int flags) {
        String describe() { return pname + "|" + start + "|" + end + "|" + blocksize + "|" + flags; }
    }

    static final class Sce {
        final int scid, rate;
        final long start;
        long end;

        Sce(int scid, long start, long end, int rate) { this.scid = scid; this.start = start; this.end = end; this.rate = rate; }

        String describe() { return scid + "|" + start + "|" + end + "|" + rate; }
    }

    record Annotation(int id, int tagid, long start, long end, String type, String datavalue, String annotationid) {
        String describe() { return id + "|" + tagid + "|" + start + "|" + end + "|" + type + "|" + datavalue + "|" + annotationid; }
    }

    enum KeyMode {
        GENERATED_KEYS("getGeneratedKeys(RETURN_GENERATED_KEYS)"), GENERATED_KEY_COLUMNS("getGeneratedKeys({\"id\"})"),
        RETURNING("INSERT ... RETURNING \"id\""), LASTVAL("SELECT lastval()"), CURRVAL("SELECT currval('<t>_id_seq')");
        final String label;

        KeyMode(String label) { this.label = label; }
    }

    /** A typed SQL NULL parameter. */
    record Null(int sqlType) {}

    static final class Mismatch extends RuntimeException {
        Mismatch(String message) { super(message); }
    }

    interface SqlCall { void run() throws Exception; }

    interface Work { void run(int worker) throws Exception; }

    // ------------------------------------------------------------------------------------------------ state
    final String url, user, password;
    final boolean dedup;
    String phase = "startup";
    long phaseStart;
    Connection meta;
    final Connection[] pool = new Connection[POOL_SIZE];
    int drvId, scid;
    final List<Tag> tags = new ArrayList<>();          // the TAG_COUNT originals, then the replacement
    Tag replacement;
    final List<Partition> partitions = new ArrayList<>();
    final Map<String, TreeMap<Key, Row>> stored = new HashMap<>();   // acknowledged rows per table
    final List<Sce> executions = new ArrayList<>();
    final List<Annotation> annotations = new ArrayList<>();
    List<List<Row>> batches;                            // the initial store batches, in send order
    long acknowledged;

    IgnitionEmulator(String url, String user, String password, boolean dedup) {
        this.url = url; this.user = user; this.password = password; this.dedup = dedup;
    }

    public static void main(String[] args) {
        TimeZone.setDefault(TimeZone.getTimeZone("UTC"));
        if (args.length != 4 || !(args[3].equals("strict") || args[3].equals("dedup"))) {
            System.err.println("usage: java -cp postgresql.jar IgnitionEmulator.java URL USER PASSWORD strict|dedup");
            System.exit(2);
        }
        IgnitionEmulator em = new IgnitionEmulator(args[0], args[1], args[2], args[3].equals("dedup"));
        int status = 0;
        try {
            em.run();
            System.out.println("IGNITION EMULATOR OK mode=" + args[3] + " rows=" + em.acknowledged);
        } catch (Throwable e) {
            System.out.println("IGNITION EMULATOR FAILED: " + em.phase + ": " + describe(e).replaceAll("\\s*\n\\s*", " "));
            status = 1;
        } finally {
            em.close();
        }
        System.exit(status);
    }

    void run() throws Exception {
        pool();
        cleanup();
        schema();
        registration();
        partitions();
        store();
        resend();
        maintenance();
        reads();
        prune();
    }

    // ------------------------------------------------------------------------------------------------ phases
    /** Phase 1: the connection pool; every borrow runs the validationQuery. */
    void pool() throws SQLException {
        begin("pool");
        Properties props = new Properties();
        props.setProperty("user", user);
        props.setProperty("password", password);
        meta = DriverManager.getConnection(url, props);
        for (int i = 0; i < POOL_SIZE; i++) pool[i] = DriverManager.getConnection(url, props);
        borrow(meta);
        for (Connection c : pool) borrow(c);
        DatabaseMetaData md = meta.getMetaData();
        done("%d+1 connections, validationQuery SELECT 1 ok; %s %s, %s %s", POOL_SIZE, md.getDatabaseProductName(),
                md.getDatabaseProductVersion(), md.getDriverName(), md.getDriverVersion());
    }

    /** Drops what an earlier run left behind. */
    void cleanup() throws SQLException {
        begin("cleanup");
        Set<Integer> drvIds = new TreeSet<>(List.of(1));
        if (tableExists("sqlth_drv")) {
            try (Statement s = meta.createStatement(); ResultSet rs = s.executeQuery("SELECT \"id\" FROM sqlth_drv")) {
                while (rs.next()) drvIds.add(rs.getInt(1));
            }
        }
        List<String> drop = new ArrayList<>();
        for (int d : drvIds) {
            for (YearMonth ym : MONTHS) drop.add(monthTable(d, ym));
            drop.add(dayTable(d, DAILY_DAY));
        }
        drop.add(SINGLE_TABLE);
        drop.addAll(METADATA_TABLES);
        for (String t : drop) exec("DROP TABLE IF EXISTS " + t);
        done("DROP TABLE IF EXISTS on %d tables", drop.size());
    }

    /** Phase 2: metadata tables, created when getTables does not find them, then checked through DatabaseMetaData. */
    void schema() throws SQLException {
        begin("schema");
        borrow(meta);
        for (TableSpec spec : metadataSpecs()) createTable(spec);
        for (TableSpec spec : metadataSpecs()) checkCatalog(spec);
        done("created and checked %s (getTables/getColumns/getPrimaryKeys/getIndexInfo)", METADATA_TABLES);
    }

    /** Phase 3: driver, tag group, tag group execution and tags; new ids read back in every PgJDBC way. */
    void registration() throws SQLException {
        begin("registration");
        borrow(meta);
        drvId = insertWithKey(meta, DRV_INSERT, "sqlth_drv", KeyMode.GENERATED_KEYS, GATEWAY, PROVIDER);
        scid = insertWithKey(meta, SCINFO_INSERT, "sqlth_scinfo", KeyMode.GENERATED_KEY_COLUMNS, TAG_GROUP, drvId);
        Sce first = new Sce(scid, REGISTERED_AT, REGISTERED_AT, RATE_MS);
        update(meta, "sqlth_sce insert", 1, SCE_INSERT, first.scid, first.start, first.end, first.rate);
        executions.add(first);
        int lastId = 0;
        for (int i = 0; i < TAG_COUNT; i++) {
            int dt = i % 4;
            Tag tag = new Tag(String.format("site/area%d/line%d/%s%03d", i / 100, i / 10 % 10, TYPE_NAMES[dt], i),
                    scid, dt, REGISTERED_AT + i);
            KeyMode mode = KeyMode.values()[i % KeyMode.values().length];
            tag.id = registerTag(tag, mode);
            check(tag.id > lastId, "tag #%d registered via %s got id %d, expected an id greater than the previous %d",
                    i, mode.label, tag.id, lastId);
            lastId = tag.id;
            tags.add(tag);
        }
        done("drv id=%d, scinfo id=%d, %d tags ids %d..%d distinct and increasing via %s", drvId, scid, TAG_COUNT,
                tags.get(0).id, lastId, Arrays.stream(KeyMode.values()).map(m -> m.label).collect(Collectors.joining(", ")));
    }

    /** Phase 4: three monthly partitions, one daily partition and sqlth_1_data (partitioning off). */
    void partitions() throws SQLException {
        begin("partitions");
        borrow(meta);
        for (YearMonth ym : MONTHS) {
            String t = monthTable(drvId, ym);
            createTable(dataSpec(t));
            registerPartition(new Partition(t, drvId, ms(ym), ms(ym.plusMonths(1)), 0, 0));
        }
        String daily = dayTable(drvId, DAILY_DAY);
        createTable(dataSpec(daily));
        registerPartition(new Partition(daily, drvId, ms(DAILY_DAY), ms(DAILY_DAY.plusDays(1)), null, 0));
        createTable(dataSpec(SINGLE_TABLE));   // no sqlth_partitions row (unknown whether Ignition writes one)
        for (String t : List.of(monthTable(drvId, MONTHS[MONTHS.length - 1]), daily, SINGLE_TABLE)) checkCatalog(dataSpec(t));
        done("created %s + sqlth_partitions rows, and %s; catalog checked",
                partitions.stream().map(Partition::pname).toList(), SINGLE_TABLE);
    }

    /** Phase 5: ~100k samples from 4 connections in parallel, batches of 256 routed by t_stamp (UTC months). */
    void store() throws Exception {
        begin("store");
        List<Row> rows = generateSamples();
        batches = chunk(rows, BATCH_SIZE);
        runParallel(w -> {
            for (int b = w; b < batches.size(); b += POOL_SIZE) sendAndAcknowledge(pool[w], "batch #" + b, batches.get(b));
        });
        List<Row> daily = dailySamples();
        for (List<Row> b : chunk(daily, BATCH_SIZE)) sendAndAcknowledge(pool[0], "daily batch", b);
        List<Row> single = singleTableSamples();
        int[] counts = sendBatch(pool[1], Map.of(SINGLE_TABLE, single));
        checkCounts("sqlth_1_data batch", counts, false);
        acknowledge(Map.of(SINGLE_TABLE, single));
        done("%d rows in %d batches of <=%d from %d connections in parallel, +%d rows to %s, +%d rows to %s",
                rows.size(), batches.size(), BATCH_SIZE, POOL_SIZE, daily.size(), dayTable(drvId, DAILY_DAY),
                single.size(), SINGLE_TABLE);
    }

    /** Phase 5b: store-and-forward re-sends: exact copies of stored batches, and batches mixing stored keys and new rows. */
    void resend() throws Exception {
        begin("re-send");
        int n = batches.size();
        Random rnd = new Random(SEED + 2);
        Map<String, List<Row>> resent = new LinkedHashMap<>();
        resent.put("exact re-send of stored batch #7", batches.get(7));
        resent.put("exact re-send of stored batch #" + n / 2, batches.get(n / 2));
        resent.put("mixed re-send based on batch #31", mixedBatch(batches.get(31), rnd));
        resent.put("mixed re-send based on batch #" + 3 * n / 4, mixedBatch(batches.get(3 * n / 4), rnd));
        int i = 0;
        for (Map.Entry<String, List<Row>> e : resent.entrySet()) resendOne(pool[i++ % POOL_SIZE], e.getKey(), e.getValue());
        for (Map.Entry<String, List<Row>> e : resent.entrySet()) verifyBatchWindow(meta, e.getKey(), e.getValue());
        done("%d re-sent batches %s; stored rows re-read and match the model", resent.size(),
                dedup ? "accepted, first stored values kept, new rows stored" : "rejected with SQLSTATE 23505, nothing stored");
    }

    /** Phase 6: tag group heartbeat, a retired tag and its replacement, annotations. */
    void maintenance() throws SQLException {
        begin("maintenance");
        borrow(meta);
        Sce a = executions.get(0);
        for (long end : new long[]{ms(LocalDate.of(2026, 9, 15)), ms(MONTHS[1]), ms(LocalDate.of(2026, 10, 14))}) heartbeat(a, end);
        Sce b = new Sce(scid, ms(LocalDate.of(2026, 10, 15)), ms(LocalDate.of(2026, 10, 15)), RATE_MS);  // after a restart
        update(meta, "sqlth_sce insert", 1, SCE_INSERT, b.scid, b.start, b.end, b.rate);
        executions.add(b);
        for (long end : new long[]{ms(MONTHS[2]), ms(DAILY_DAY), ms(DAILY_DAY.plusDays(1))}) heartbeat(b, end);

        Tag old = tags.get(RETIRED_TAG);
        long retiredAt = ms(LocalDate.of(2026, 11, 15));
        update(meta, "retire tag " + old.id, 1, TE_RETIRE, retiredAt, old.id);
        old.retired = retiredAt;
        replacement = new Tag(old.path, scid, INT, retiredAt);
        replacement.id = registerTag(replacement, KeyMode.GENERATED_KEYS);
        int maxId = tags.stream().mapToInt(t -> t.id).max().orElse(0);
        check(replacement.id > maxId, "replacement of tag %d got id %d, expected a new id > %d", old.id, replacement.id, maxId);
        tags.add(replacement);
        List<Row> rows = new ArrayList<>();
        Random rnd = new Random(SEED + 3);
        for (int k = 1; k <= 40; k++) rows.add(sample(rnd, replacement, retiredAt + k * 6 * HOUR + 123));
        sendAndAcknowledge(pool[2], "replacement tag batch", rows);

        for (int k = 0; k < 6; k++) {
            long start = ms(MONTHS[1]) + k * 3 * DAY + k * 1000L;
            Annotation x = new Annotation(0, tags.get(k * 37).id, start, start + k * HOUR, "note",
                    "operator note " + k + " – ü", new UUID(rnd.nextLong(), rnd.nextLong()).toString());
            int id = insertWithKey(meta, ANNOTATION_INSERT, "sqlth_annotations", KeyMode.GENERATED_KEY_COLUMNS,
                    x.tagid(), x.start(), x.end(), x.type(), x.datavalue(), x.annotationid());
            annotations.add(new Annotation(id, x.tagid(), x.start(), x.end(), x.type(), x.datavalue(), x.annotationid()));
        }
        long[][] ranges = {{ms(MONTHS[0]), ms(DAILY_DAY)}, {ms(LocalDate.of(2026, 10, 4)), ms(LocalDate.of(2026, 10, 8))},
                {ms(LocalDate.of(2026, 8, 1)), ms(LocalDate.of(2026, 8, 2))}};
        for (long[] r : ranges) checkAnnotations(meta, r[0], r[1]);
        done("sqlth_sce end_time advanced %d times (+1 new execution), tag %d retired -> replacement id %d with %d rows,"
                + " %d annotations read back by range", 6, old.id, replacement.id, rows.size(), annotations.size());
    }

    /** Phase 7: the historian's reads, each repeated so PgJDBC switches to named statements and binary results. */
    void reads() throws Exception {
        begin("reads");
        borrow(meta);
        int lookups = checkPartitionLookups(pool[0]);
        long[] rowsRead = new long[partitions.size()];
        runParallel(w -> {
            for (int p = w; p < partitions.size(); p += POOL_SIZE) rowsRead[p] = rawReads(pool[w], partitions.get(p));
        });
        int seeds = seedReads(pool[1]);
        long single = singleTableReads(pool[2]);
        metadataReads(pool[3]);
        done("%d partition lookups, raw reads (3-tag OR, 200-tag OR, 300-tag IN) x%d per partition in parallel returned"
                        + " %d rows, %d seed queries, %d rows from %s, metadata reads; all equal to the model", lookups,
                READ_REPEATS, LongStream.of(rowsRead).sum(), seeds, single, SINGLE_TABLE);
    }

    /** Phase 8: pruning drops the oldest partition and its sqlth_partitions row. */
    void prune() throws Exception {
        begin("prune");
        borrow(meta);
        Partition oldest = partitions.get(0);
        exec("DROP TABLE " + oldest.pname());
        update(meta, "delete partition row", 1, PARTITION_DELETE, oldest.pname());
        partitions.remove(0);
        int droppedRows = stored.remove(oldest.pname()).size();
        // pool[0] holds a named server-side statement on the dropped table from the reads phase
        List<Integer> three = List.of(tags.get(0).id, tags.get(1).id, tags.get(2).id);
        expectSqlState("42P01", "raw query on dropped " + oldest.pname(),
                () -> queryRows(pool[0], "raw", rawOrSql(oldest.pname(), 3), true, params(oldest.start(), oldest.end(), three)));
        expectSqlState("42P01", "seed query on dropped " + oldest.pname(),
                () -> queryRows(pool[1], "seed", seedSql(oldest.pname()), false, tags.get(0).id, oldest.end()));
        check(!tableExists(oldest.pname()), "getTables still lists %s after DROP TABLE", oldest.pname());
        List<Integer> all = tags.subList(0, TAG_COUNT).stream().map(t -> t.id).toList();
        for (Partition p : partitions) {
            check(tableExists(p.pname()), "getTables no longer lists %s", p.pname());
            rawRead(pool[2], p.pname(), true, all, p.start(), p.end(), "after prune");
        }
        checkPartitionLookup(pool[3], drvId, ms(MONTHS[0]), ms(DAILY_DAY.plusDays(1)));
        done("dropped %s (%d rows): 42P01 on read, gone from getTables and the partition lookup; %s unchanged",
                oldest.pname(), droppedRows, partitions.stream().map(Partition::pname).toList());
    }

    // ------------------------------------------------------------------------------------------------ schema helpers
    void createTable(TableSpec spec) throws SQLException {
        check(!tableExists(spec.name()), "getTables(%s) found the table right after DROP TABLE IF EXISTS", spec.name());
        exec(spec.create());
        for (Map.Entry<String, String> ix : new TreeMap<>(spec.indexes()).entrySet())
            exec("CREATE INDEX " + ix.getKey() + " ON " + spec.name() + " (\"" + ix.getValue() + "\")");
        check(tableExists(spec.name()), "getTables(%s, {TABLE}) did not find the table after CREATE TABLE", spec.name());
        if (spec.pk().equals(List.of("tagid", "t_stamp"))) stored.put(spec.name(), new TreeMap<>());   // a data table
    }

    boolean tableExists(String table) throws SQLException {
        List<String> found = new ArrayList<>();
        try (ResultSet rs = meta.getMetaData().getTables(null, null, table, new String[]{"TABLE"})) {
            while (rs.next()) found.add(rs.getString("TABLE_NAME") + " " + rs.getString("TABLE_TYPE"));
        }
        check(found.isEmpty() || found.equals(List.of(table + " TABLE")),
                "getTables(%s, {TABLE}): expected no row or [%s TABLE], got %s", table, table, found);
        return !found.isEmpty();
    }

    void checkCatalog(TableSpec spec) throws SQLException {
        DatabaseMetaData md = meta.getMetaData();
        String t = spec.name();
        List<String> cols = new ArrayList<>();
        try (ResultSet rs = md.getColumns(null, null, t, null)) {
            while (rs.next()) {
                check(t.equals(rs.getString("TABLE_NAME")), "getColumns(%s) returned a column of %s", t, rs.getString("TABLE_NAME"));
                cols.add(Col.describe(rs.getString("COLUMN_NAME"), rs.getString("TYPE_NAME"), rs.getInt("DATA_TYPE"),
                        rs.getInt("COLUMN_SIZE"), rs.getInt("NULLABLE") == DatabaseMetaData.columnNoNulls, rs.getString("COLUMN_DEF")));
            }
        }
        expectEqual("getColumns(" + t + ")", spec.cols().stream().map(Col::describe).toList(), cols);

        List<String> pk = new ArrayList<>(), wantPk = new ArrayList<>();
        for (int i = 0; i < spec.pk().size(); i++) wantPk.add(spec.pk().get(i) + " key_seq=" + (i + 1) + " pk_name=" + t + "_pkey");
        try (ResultSet rs = md.getPrimaryKeys(null, null, t)) {
            while (rs.next()) pk.add(rs.getString("COLUMN_NAME") + " key_seq=" + rs.getInt("KEY_SEQ") + " pk_name=" + rs.getString("PK_NAME"));
        }
        expectEqual("getPrimaryKeys(" + t + ")", wantPk, pk);

        List<String> ix = new ArrayList<>(), wantIx = new ArrayList<>();
        for (int i = 0; i < spec.pk().size(); i++) wantIx.add("unique " + t + "_pkey #" + (i + 1) + " " + spec.pk().get(i));
        spec.indexes().forEach((name, col) -> wantIx.add("non-unique " + name + " #1 " + col));
        boolean seenNonUnique = false;
        try (ResultSet rs = md.getIndexInfo(null, null, t, false, false)) {
            while (rs.next()) {
                boolean nonUnique = rs.getBoolean("NON_UNIQUE");
                check(nonUnique || !seenNonUnique, "getIndexInfo(%s): a unique index row after a non-unique one", t);
                seenNonUnique |= nonUnique;
                ix.add((nonUnique ? "non-unique " : "unique ") + rs.getString("INDEX_NAME") + " #"
                        + rs.getInt("ORDINAL_POSITION") + " " + rs.getString("COLUMN_NAME"));
            }
        }
        Collections.sort(wantIx);
        Collections.sort(ix);
        expectEqual("getIndexInfo(" + t + ")", wantIx, ix);
    }

    // ------------------------------------------------------------------------------------------------ write helpers
    int registerTag(Tag t, KeyMode mode) throws SQLException {
        return insertWithKey(meta, TE_INSERT, "sqlth_te", mode, t.path, t.scid, t.datatype, QUERYMODE, t.created);
    }

    void registerPartition(Partition p) throws SQLException {
        update(meta, "sqlth_partitions insert", 1, PARTITION_INSERT, p.pname(), p.drvid(), p.start(), p.end(),
                p.blocksize() == null ? new Null(Types.INTEGER) : p.blocksize(), p.flags());
        partitions.add(p);
    }

    void heartbeat(Sce e, long end) throws SQLException {
        update(meta, "sqlth_sce heartbeat", 1, SCE_UPDATE, end, e.scid, e.start);
        e.end = end;
    }

    /** Inserts one row and returns its serial id, read back the way `mode` says. */
    int insertWithKey(Connection c, String sql, String table, KeyMode mode, Object... values) throws SQLException {
        String what = table + " insert read back via " + mode.label;
        if (mode == KeyMode.GENERATED_KEYS || mode == KeyMode.GENERATED_KEY_COLUMNS) {
            try (PreparedStatement ps = mode == KeyMode.GENERATED_KEYS ? c.prepareStatement(sql, Statement.RETURN_GENERATED_KEYS)
                    : c.prepareStatement(sql, new String[]{"id"})) {
                bind(ps, values);
                int n = ps.executeUpdate();
                check(n == 1, "%s: update count %d, expected 1", what, n);
                try (ResultSet rs = ps.getGeneratedKeys()) { return singleId(rs, "id", what); }
            }
        }
        if (mode == KeyMode.RETURNING) {
            try (PreparedStatement ps = c.prepareStatement(sql + " RETURNING \"id\"")) {
                bind(ps, values);
                try (ResultSet rs = ps.executeQuery()) { return singleId(rs, "id", what); }
            }
        }
        update(c, what, 1, sql, values);
        String q = mode == KeyMode.LASTVAL ? "SELECT lastval()" : "SELECT currval('" + table + "_id_seq')";
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery(q)) { return singleId(rs, null, what); }
    }

    static int singleId(ResultSet rs, String label, String what) throws SQLException {
        check(rs.next(), "%s: no row returned", what);
        long id = label == null ? rs.getLong(1) : rs.getLong(label);
        check(!rs.next(), "%s: more than one row returned", what);
        check(id > 0 && id <= Integer.MAX_VALUE, "%s: id %d out of the serial range", what, id);
        return (int) id;
    }

    /** One store-and-forward write: borrow, autocommit off, one executeBatch per partition, commit. */
    int[] sendBatch(Connection c, Map<String, List<Row>> byTable) throws SQLException {
        borrow(c);
        c.setAutoCommit(false);
        try {
            int[] all = new int[byTable.values().stream().mapToInt(List::size).sum()];
            int k = 0;
            for (Map.Entry<String, List<Row>> e : byTable.entrySet()) {
                try (PreparedStatement ps = c.prepareStatement(insertSql(e.getKey()))) {
                    for (Row r : e.getValue()) {
                        bindRow(ps, r);
                        ps.addBatch();
                    }
                    for (int n : ps.executeBatch()) all[k++] = n;
                }
            }
            c.commit();
            return all;
        } catch (SQLException e) {
            c.rollback();
            throw e;
        } finally {
            c.setAutoCommit(true);
        }
    }

    void sendAndAcknowledge(Connection c, String what, List<Row> rows) throws SQLException {
        Map<String, List<Row>> byTable = groupByTable(rows);
        checkCounts(what, sendBatch(c, byTable), false);
        acknowledge(byTable);
    }

    static void bindRow(PreparedStatement ps, Row r) throws SQLException {
        ps.setInt(1, r.tagid());
        if (r.intValue() != null) ps.setLong(2, r.intValue()); else ps.setNull(2, Types.BIGINT);
        if (r.floatValue() != null) ps.setDouble(3, r.floatValue()); else ps.setNull(3, Types.DOUBLE);
        if (r.stringValue() != null) ps.setString(4, r.stringValue()); else ps.setNull(4, Types.VARCHAR);
        if (r.dateValue() != null) ps.setTimestamp(5, new Timestamp(r.dateValue())); else ps.setNull(5, Types.TIMESTAMP);
        ps.setInt(6, r.quality());
        ps.setLong(7, r.t());
    }

    static void checkCounts(String what, int[] counts, boolean allowZero) {
        for (int i = 0; i < counts.length; i++)
            check(counts[i] == 1 || (allowZero && counts[i] == 0), "%s: executeBatch update count #%d is %d, expected %s",
                    what, i, counts[i], allowZero ? "0 or 1" : "1");
    }

    /** Records acknowledged rows; an already-stored key keeps its first value. */
    synchronized void acknowledge(Map<String, List<Row>> byTable) {
        byTable.forEach((table, rows) -> {
            for (Row r : rows) if (stored.get(table).putIfAbsent(r.key(), r) == null) acknowledged++;
        });
    }

    void resendOne(Connection c, String what, List<Row> batch) throws SQLException {
        Map<String, List<Row>> byTable = groupByTable(batch);
        long already = byTable.entrySet().stream().mapToLong(e -> e.getValue().stream()
                .filter(r -> stored.get(e.getKey()).containsKey(r.key())).count()).sum();
        String desc = String.format("%s (%d rows, %d already stored)", what, batch.size(), already);
        int[] counts;
        try {
            counts = sendBatch(c, byTable);
        } catch (SQLException e) {
            if (dedup) throw fail("%s: dedup mode expects the batch to succeed with each (tagid,t_stamp) stored once,"
                    + " got SQLSTATE %s: %s", desc, sqlState(e), e.getMessage());
            check("23505".equals(sqlState(e)), "%s: expected SQLSTATE 23505 (unique_violation), got %s: %s",
                    desc, sqlState(e), e.getMessage());
            return;   // nothing acknowledged: Ignition quarantines the batch
        }
        if (!dedup) throw fail("%s: strict mode expects SQLSTATE 23505 and the whole batch rejected, but executeBatch"
                + " succeeded (update counts %s)", desc, summarize(counts));
        checkCounts(desc, counts, true);
        acknowledge(byTable);
    }

    /** Re-sent stored rows with other values, interleaved with new keys close by (a new key comes first). */
    List<Row> mixedBatch(List<Row> sent, Random rnd) {
        List<Row> out = new ArrayList<>();
        Set<Key> fresh = new HashSet<>();
        Map<Integer, Tag> byId = tags.stream().collect(Collectors.toMap(t -> t.id, t -> t));
        for (int i = 0; i < sent.size(); i += 4) {
            Row old = sent.get(i);
            long t = old.t() + 1;
            while (fresh.contains(new Key(old.tagid(), t)) || stored.get(tableFor(t)).containsKey(new Key(old.tagid(), t))) t++;
            fresh.add(new Key(old.tagid(), t));
            out.add(sample(rnd, byId.get(old.tagid()), t));
            out.add(old.changed());
        }
        return out;
    }

    void verifyBatchWindow(Connection c, String what, List<Row> batch) throws SQLException {
        for (Map.Entry<String, List<Row>> e : groupByTable(batch).entrySet()) {
            List<Row> rows = e.getValue();
            List<Integer> ids = rows.stream().map(Row::tagid).distinct().sorted().toList();
            long from = rows.stream().mapToLong(Row::t).min().getAsLong(), to = rows.stream().mapToLong(Row::t).max().getAsLong();
            rawRead(c, e.getKey(), true, ids, from, to, "after " + what);
        }
    }

    // ------------------------------------------------------------------------------------------------ read helpers
    int checkPartitionLookups(Connection c) throws SQLException {
        long[][] ranges = {
                {ms(LocalDate.of(2026, 9, 10)), ms(LocalDate.of(2026, 9, 20))},
                {ms(LocalDate.of(2026, 9, 20)), ms(LocalDate.of(2026, 10, 5))},
                {ms(MONTHS[1]), ms(MONTHS[1])},                      // both ends inclusive: Sep and Oct
                {ms(LocalDate.of(2026, 11, 20)), ms(DAILY_DAY) + 6 * HOUR},
                {ms(LocalDate.of(2026, 8, 1)), ms(LocalDate.of(2026, 8, 31))},
                {ms(MONTHS[0]), ms(DAILY_DAY.plusDays(1))}};
        for (long[] r : ranges) checkPartitionLookup(c, drvId, r[0], r[1]);
        checkPartitionLookup(c, drvId + 1, ms(MONTHS[0]), ms(DAILY_DAY.plusDays(1)));   // another gateway: nothing
        return ranges.length + 1;
    }

    void checkPartitionLookup(Connection c, int drv, long from, long to) throws SQLException {
        List<String> want = partitions.stream().filter(p -> p.drvid() == drv && p.start() <= to && p.end() >= from
                && (p.blocksize() == null || p.blocksize() <= 0)).sorted(Comparator.comparingLong(Partition::start))
                .map(Partition::describe).toList();
        List<String> got = new ArrayList<>();
        borrow(c);
        try (PreparedStatement ps = c.prepareStatement(PARTITION_LOOKUP)) {
            bind(ps, drv, to, from, 0);
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    int bs = rs.getInt("blocksize");
                    Integer blocksize = rs.wasNull() ? null : bs;
                    got.add(rs.getString("pname") + "|" + rs.getLong("start_time") + "|" + rs.getLong("end_time") + "|"
                            + blocksize + "|" + rs.getInt("flags"));
                }
            }
        }
        expectEqual(String.format("partition lookup drvid=%d [%s, %s]", drv, Instant.ofEpochMilli(from), Instant.ofEpochMilli(to)), want, got);
    }

    /** The three raw query shapes on one partition, READ_REPEATS times with moving windows and tag sets. */
    long rawReads(Connection c, Partition p) throws SQLException {
        long n = 0, len = p.end() - p.start();
        List<Integer> originals = tags.subList(0, TAG_COUNT).stream().map(t -> t.id).toList();
        for (int r = 0; r < READ_REPEATS; r++) {
            long from = p.start() + r * len / 20, to = p.end() - r * len / 20;
            List<Integer> three = r == 0 ? List.of(tags.get(RETIRED_TAG).id, replacement.id, tags.get(0).id)
                    : List.of(tags.get(4 * r + 1).id, tags.get(4 * r + 2).id, tags.get(4 * r + 3).id);
            long f = from, tt = to;
            if (r % 2 == 1) {   // bounds on exact stored t_stamps: >= and <= must include them
                List<Row> first = expectedRange(p.pname(), List.of(three.get(0)), from, to);
                if (first.size() >= 2) { f = first.get(1).t(); tt = first.get(first.size() - 2).t(); }
            }
            n += rawRead(c, p.pname(), false, three, f, tt, "3-tag OR-chain #" + r);
            n += rawRead(c, p.pname(), false, rotate(originals, 17 * r).subList(0, 200), from, to, "200-tag OR-chain #" + r);
            n += rawRead(c, p.pname(), true, rotate(originals, 50 * r), from, to, "300-tag IN-list #" + r);
        }
        return n;
    }

    int rawRead(Connection c, String table, boolean inList, List<Integer> ids, long from, long to, String what) throws SQLException {
        String sql = inList ? rawInSql(table, ids.size()) : rawOrSql(table, ids.size());
        String desc = String.format("%s on %s, t_stamp [%d, %d], %d tags", what, table, from, to, ids.size());
        List<Row> got = queryRows(c, desc, sql, true, params(from, to, ids));
        got.sort(Comparator.comparing(Row::key));
        compareRows(desc, expectedRange(table, ids, from, to), got);
        return got.size();
    }

    int seedReads(Connection c) throws SQLException {
        Tag retired = tags.get(RETIRED_TAG);
        long nov = ms(MONTHS[2]), dec = ms(DAILY_DAY);
        Row first5 = expectedRange(partitions.get(0).pname(), List.of(tags.get(5).id), 0, Long.MAX_VALUE).get(0);
        List<Object[]> cases = new ArrayList<>(List.of(
                new Object[]{tags.get(0), ms(MONTHS[0])},           // before all data: empty
                new Object[]{tags.get(5), first5.t()},              // strictly before the first row: empty
                new Object[]{tags.get(5), first5.t() + 1},
                new Object[]{tags.get(9), ms(MONTHS[1])},           // walks back to the previous month's last ms
                new Object[]{tags.get(10), ms(MONTHS[1]) + 1},
                new Object[]{tags.get(2), dec + 12 * HOUR},          // in the daily partition
                new Object[]{tags.get(250), dec + 12 * HOUR},        // not in the daily partition: walks back
                new Object[]{replacement, replacement.created},     // nothing before its creation: walks back to the start
                new Object[]{retired, dec + 12 * HOUR}));
        for (int k = 0; k < 8; k++) cases.add(new Object[]{tags.get(20 + 11 * k), nov + 14 * DAY + k * 3 * HOUR});
        int queries = 0;
        for (Object[] cs : cases) {
            Tag tag = (Tag) cs[0];
            long start = (Long) cs[1];
            int idx = -1;
            for (int i = 0; i < partitions.size(); i++) if (partitions.get(i).start() <= start) idx = i;
            Row got = null;
            for (int i = idx; i >= 0 && got == null; i--, queries++) {   // Ignition walks back through older partitions
                String desc = String.format("seed on %s for tag %d before %d", partitions.get(i).pname(), tag.id, start);
                List<Row> rows = queryRows(c, desc, seedSql(partitions.get(i).pname()), false, tag.id, start);
                check(rows.size() <= 1, "%s: LIMIT 1 returned %d rows", desc, rows.size());
                got = rows.isEmpty() ? null : rows.get(0);
            }
            Row want = expectedSeed(tag.id, start);
            check(Objects.equals(want, got), "seed for tag %d before %d (%s): expected %s, got %s", tag.id, start,
                    Instant.ofEpochMilli(start), want == null ? "no row" : want, got == null ? "no row" : got);
        }
        return queries;
    }

    long singleTableReads(Connection c) throws SQLException {
        long n = 0;
        List<Integer> ids = tags.subList(0, 10).stream().map(t -> t.id).toList();
        for (int r = 0; r < READ_REPEATS; r++) {
            n += rawRead(c, SINGLE_TABLE, false, ids.subList(r, r + 3), 0, Long.MAX_VALUE / 2, "3-tag OR-chain #" + r);
            n += rawRead(c, SINGLE_TABLE, true, ids, r * HOUR, ms(LocalDate.of(2026, 1, 2)) - r * HOUR, "10-tag IN-list #" + r);
            long start = ms(LocalDate.of(2026, 1, 1)) + (3 * r + 1) * 3 * HOUR / 2;
            int tagid = ids.get(r);
            List<Row> rows = queryRows(c, "seed on " + SINGLE_TABLE, seedSql(SINGLE_TABLE), false, tagid, start);
            Row want = stored.get(SINGLE_TABLE).headMap(new Key(Integer.MIN_VALUE, start), false).descendingMap().values()
                    .stream().filter(x -> x.tagid() == tagid).findFirst().orElse(null);
            compareRows("seed on " + SINGLE_TABLE + " for tag " + tagid, want == null ? List.of() : List.of(want), rows);
        }
        return n;
    }

    void metadataReads(Connection c) throws SQLException {
        List<String> wantTags = tags.stream().sorted(Comparator.comparingInt(t -> t.id)).map(Tag::describe).toList();
        long[][] sceRanges = {{ms(MONTHS[1]), ms(LocalDate.of(2026, 10, 10))}, {ms(LocalDate.of(2026, 10, 10)), ms(LocalDate.of(2026, 10, 20))},
                {ms(MONTHS[2]), ms(MONTHS[2]) + DAY}, {ms(LocalDate.of(2026, 8, 1)), ms(LocalDate.of(2026, 8, 2))},
                {0, Long.MAX_VALUE / 2}};
        for (int r = 0; r < READ_REPEATS; r++) {
            List<String> got = new ArrayList<>(selectStrings(c, TE_ALL));
            got.sort(Comparator.comparingInt(s -> Integer.parseInt(s.substring(0, s.indexOf('|')))));
            expectEqual("sqlth_te (all rows, sorted by id)", wantTags, got);
            expectEqual("sqlth_te by path " + replacement.path, List.of(replacement.id + "|" + INT),
                    selectStrings(c, TE_BY_PATH, replacement.path));
            Tag some = tags.get(100 + r);
            expectEqual("sqlth_te by path " + some.path, List.of(some.id + "|" + some.datatype), selectStrings(c, TE_BY_PATH, some.path));
            expectEqual("sqlth_scinfo", List.of(scid + "|" + TAG_GROUP + "|" + drvId), selectStrings(c, SCINFO_ALL));
            expectEqual("sqlth_drv", List.of(drvId + "|" + GATEWAY + "|" + PROVIDER), selectStrings(c, DRV_ALL));
            long from = sceRanges[r % sceRanges.length][0], to = sceRanges[r % sceRanges.length][1];
            List<String> wantSce = executions.stream().filter(e -> e.start <= to && e.end >= from)
                    .sorted(Comparator.comparingLong(e -> e.start)).map(Sce::describe).toList();
            expectEqual("sqlth_sce overlapping [" + from + ", " + to + "]", wantSce, selectStrings(c, SCE_RANGE, to, from));
        }
    }

    void checkAnnotations(Connection c, long from, long to) throws SQLException {
        List<String> want = annotations.stream().filter(a -> a.start() <= to && a.end() >= from)
                .sorted(Comparator.comparingLong(Annotation::start)).map(Annotation::describe).toList();
        expectEqual("sqlth_annotations overlapping [" + from + ", " + to + "]", want, selectStrings(c, ANNOTATION_RANGE, to, from));
    }

    /** Runs a prepared SELECT and returns each row as its columns joined by '|'. */
    List<String> selectStrings(Connection c, String sql, Object... params) throws SQLException {
        borrow(c);
        List<String> out = new ArrayList<>();
        try (PreparedStatement ps = c.prepareStatement(sql)) {
            bind(ps, params);
            try (ResultSet rs = ps.executeQuery()) {
                int n = rs.getMetaData().getColumnCount();
                while (rs.next()) {
                    StringJoiner j = new StringJoiner("|");
                    for (int i = 1; i <= n; i++) j.add(String.valueOf(rs.getObject(i)));
                    out.add(j.toString());
                }
            }
        }
        return out;
    }

    /** Runs a data SELECT; checks the t_stamp order the ORDER BY asks for. */
    List<Row> queryRows(Connection c, String what, String sql, boolean ascending, Object... params) throws SQLException {
        borrow(c);
        List<Row> out = new ArrayList<>();
        try (PreparedStatement ps = c.prepareStatement(sql)) {
            bind(ps, params);
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) out.add(readRow(rs));
            }
        }
        for (int i = 1; i < out.size(); i++) {
            long prev = out.get(i - 1).t(), cur = out.get(i).t();
            check(ascending ? cur >= prev : cur <= prev, "%s: rows not ordered by t_stamp %s: row %d has t_stamp %d after %d",
                    what, ascending ? "ASC" : "DESC", i, cur, prev);
        }
        return out;
    }

    static Row readRow(ResultSet rs) throws SQLException {
        int tagid = rs.getInt("tagid");
        long iv = rs.getLong("intvalue");
        Long intValue = rs.wasNull() ? null : iv;
        double fv = rs.getDouble("floatvalue");
        Double floatValue = rs.wasNull() ? null : fv;
        String s = rs.getString("stringvalue");
        Timestamp ts = rs.getTimestamp("datevalue");
        int q = rs.getInt("dataintegrity");
        Integer quality = rs.wasNull() ? null : q;
        return new Row(tagid, intValue, floatValue, s, ts == null ? null : ts.getTime(), quality, rs.getLong("t_stamp"));
    }

    List<Row> expectedRange(String table, Collection<Integer> tagIds, long from, long to) {
        Set<Integer> set = new HashSet<>(tagIds);
        return stored.get(table).subMap(new Key(Integer.MIN_VALUE, from), true, new Key(Integer.MAX_VALUE, to), true)
                .values().stream().filter(r -> set.contains(r.tagid())).toList();
    }

    /** The latest stored row of the tag before `start` over all partitions. */
    Row expectedSeed(int tagid, long start) {
        Row best = null;
        for (Partition p : partitions) {
            for (Row r : stored.get(p.pname()).headMap(new Key(Integer.MIN_VALUE, start), false).descendingMap().values()) {
                if (r.tagid() != tagid) continue;
                if (best == null || r.t() > best.t()) best = r;
                break;
            }
        }
        return best;
    }

    // ------------------------------------------------------------------------------------------------ sample data
    /** Per tag a random walk of t_stamps over the months, plus every tag at each month edge (ties across tags). */
    List<Row> generateSamples() {
        Random rnd = new Random(SEED);
        long from = ms(MONTHS[0]), to = ms(MONTHS[MONTHS.length - 1].plusMonths(1));
        List<Row> rows = new ArrayList<>();
        for (Tag tag : tags) {
            TreeSet<Long> stamps = new TreeSet<>();
            for (int i = 1; i < MONTHS.length; i++) { stamps.add(ms(MONTHS[i]) - 1); stamps.add(ms(MONTHS[i])); }
            for (long t = from + 1 + rnd.nextInt(3_600_000); t < to; t += 60_000L * (1 + rnd.nextInt(2 * MEAN_STEP_MINUTES)) + rnd.nextInt(1000))
                stamps.add(t);
            for (long t : stamps) rows.add(sample(rnd, tag, t));
        }
        rows.sort(Comparator.comparing(Row::key));
        return rows;
    }

    List<Row> dailySamples() {
        Random rnd = new Random(SEED + 1);
        List<Row> rows = new ArrayList<>();
        for (int k = 0; k < 12; k++)
            for (int i = 0; i < 40; i++) rows.add(sample(rnd, tags.get(i), ms(DAILY_DAY) + HOUR / 2 + k * 2 * HOUR + i * 1000L));
        return rows;
    }

    List<Row> singleTableSamples() {
        Random rnd = new Random(SEED + 4);
        List<Row> rows = new ArrayList<>();
        for (int k = 0; k < 10; k++)
            for (int i = 0; i < 10; i++) rows.add(sample(rnd, tags.get(i), ms(LocalDate.of(2026, 1, 1)) + k * 3 * HOUR + i * 1000L));
        return rows;
    }

    /** Only the column of the tag's datatype is set; mostly good quality. */
    static Row sample(Random rnd, Tag tag, long t) {
        Long iv = null, dv = null;
        Double fv = null;
        String sv = null;
        switch (tag.datatype) {
            case INT -> iv = switch (rnd.nextInt(8)) {
                case 0 -> (1L << 40) + rnd.nextInt(1000);
                case 1 -> -(long) rnd.nextInt(100_000);
                default -> (long) rnd.nextInt(2);
            };
            case FLOAT -> fv = Math.round(rnd.nextGaussian() * 1e6) / 1000.0;
            case STRING -> {
                int k = rnd.nextInt(STRINGS.length + 1);
                sv = k < STRINGS.length ? STRINGS[k] : "batch " + rnd.nextInt(100_000);
            }
            default -> dv = ms(LocalDate.of(2020, 1, 1)) + (long) (rnd.nextDouble() * 7 * 365 * DAY);
        }
        int q = rnd.nextInt(20) == 0 ? NOT_GOOD[rnd.nextInt(NOT_GOOD.length)] : GOOD;
        return new Row(tag.id, iv, fv, sv, dv, q, t);
    }

    String tableFor(long t) {
        for (Partition p : partitions) if (p.start() <= t && t < p.end()) return p.pname();
        throw fail("no partition covers t_stamp %d (%s)", t, Instant.ofEpochMilli(t));
    }

    Map<String, List<Row>> groupByTable(List<Row> rows) {
        Map<String, List<Row>> out = new LinkedHashMap<>();
        for (Row r : rows) out.computeIfAbsent(tableFor(r.t()), k -> new ArrayList<>()).add(r);
        return out;
    }

    // ------------------------------------------------------------------------------------------------ plumbing
    void begin(String p) {
        phase = p;
        phaseStart = System.nanoTime();
    }

    void done(String fmt, Object... args) {
        System.out.printf("[%s] %s (%.1f s)%n", phase, String.format(fmt, args), (System.nanoTime() - phaseStart) / 1e9);
    }

    /** Ignition's pool validates each borrowed connection with its validationQuery. */
    static void borrow(Connection c) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT 1")) {
            check(rs.next() && rs.getInt(1) == 1 && !rs.next(), "validationQuery SELECT 1 did not return one row holding 1");
        }
    }

    void exec(String sql) throws SQLException {
        try (Statement s = meta.createStatement()) { s.execute(sql); }
    }

    static void update(Connection c, String what, int expected, String sql, Object... params) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement(sql)) {
            bind(ps, params);
            int n = ps.executeUpdate();
            check(n == expected, "%s: update count %d, expected %d (%s)", what, n, expected, sql);
        }
    }

    static void bind(PreparedStatement ps, Object... params) throws SQLException {
        for (int i = 0; i < params.length; i++) {
            Object p = params[i];
            if (p instanceof Integer v) ps.setInt(i + 1, v);
            else if (p instanceof Long v) ps.setLong(i + 1, v);
            else if (p instanceof String v) ps.setString(i + 1, v);
            else if (p instanceof Double v) ps.setDouble(i + 1, v);
            else if (p instanceof Null n) ps.setNull(i + 1, n.sqlType());
            else throw new IllegalArgumentException("cannot bind " + p);
        }
    }

    static Object[] params(long from, long to, List<Integer> ids) {
        Object[] out = new Object[ids.size() + 2];
        out[0] = from;
        out[1] = to;
        for (int i = 0; i < ids.size(); i++) out[i + 2] = ids.get(i);
        return out;
    }

    void runParallel(Work work) throws Exception {
        ExecutorService ex = Executors.newFixedThreadPool(POOL_SIZE);
        try {
            List<Future<?>> futures = new ArrayList<>();
            for (int w = 0; w < POOL_SIZE; w++) {
                int worker = w;
                futures.add(ex.submit(() -> { work.run(worker); return null; }));
            }
            for (Future<?> f : futures) {
                try {
                    f.get();
                } catch (ExecutionException e) {
                    if (e.getCause() instanceof Exception x) throw x;
                    throw (Error) e.getCause();
                }
            }
        } finally {
            ex.shutdownNow();
        }
    }

    void expectSqlState(String state, String what, SqlCall call) throws Exception {
        try {
            call.run();
        } catch (SQLException e) {
            check(state.equals(sqlState(e)), "%s: expected SQLSTATE %s, got %s: %s", what, state, sqlState(e), e.getMessage());
            return;
        }
        throw fail("%s: expected SQLSTATE %s, but the statement succeeded", what, state);
    }

    static String sqlState(SQLException e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (t instanceof SQLException s) {
                if (s.getSQLState() != null) return s.getSQLState();
                if (s.getNextException() != null && s.getNextException().getSQLState() != null) return s.getNextException().getSQLState();
            }
        }
        return null;
    }

    static void compareRows(String what, List<Row> want, List<Row> got) {
        if (want.equals(got)) return;
        int i = 0;
        while (i < want.size() && i < got.size() && want.get(i).equals(got.get(i))) i++;
        throw fail("%s: expected %d rows, got %d; first difference at row %d (sorted by t_stamp, tagid): expected %s, got %s",
                what, want.size(), got.size(), i, i < want.size() ? want.get(i) : "no row", i < got.size() ? got.get(i) : "no row");
    }

    static void expectEqual(String what, List<String> want, List<String> got) {
        check(want.equals(got), "%s: expected %s, got %s", what, want, got);
    }

    static void check(boolean ok, String fmt, Object... args) {
        if (!ok) throw fail(fmt, args);
    }

    static Mismatch fail(String fmt, Object... args) {
        return new Mismatch(String.format(fmt, args));
    }

    static String describe(Throwable e) {
        if (e instanceof Mismatch) return e.getMessage();
        if (e instanceof SQLException s) {
            String next = s.getNextException() != null ? " (next: " + s.getNextException().getMessage() + ")" : "";
            return "unexpected SQLException, SQLSTATE " + sqlState(s) + ": " + s.getMessage() + next;
        }
        StackTraceElement[] st = e.getStackTrace();
        return "unexpected " + e + (st.length > 0 ? " at " + st[0] : "");
    }

    static String summarize(int[] counts) {
        return Arrays.stream(counts).boxed().collect(Collectors.groupingBy(x -> x, TreeMap::new, Collectors.counting())).toString();
    }

    static <T> List<T> rotate(List<T> list, int by) {
        List<T> out = new ArrayList<>(list);
        Collections.rotate(out, -by);
        return out;
    }

    static <T> List<List<T>> chunk(List<T> list, int size) {
        List<List<T>> out = new ArrayList<>();
        for (int i = 0; i < list.size(); i += size) out.add(list.subList(i, Math.min(list.size(), i + size)));
        return out;
    }

    static long ms(LocalDate d) { return d.atStartOfDay(ZoneOffset.UTC).toInstant().toEpochMilli(); }

    static long ms(YearMonth ym) { return ms(ym.atDay(1)); }

    void close() {
        for (Connection c : pool) closeQuietly(c);
        closeQuietly(meta);
    }

    static void closeQuietly(Connection c) {
        try { if (c != null) c.close(); } catch (SQLException ignored) { }
    }
}
