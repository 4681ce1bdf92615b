import java.math.BigDecimal;
import java.sql.*;
import java.util.*;

/**
 * PgJDBC (the driver Ignition, DBeaver and Metabase use) against a running deltagate.
 * Connection settings come from PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE.
 * Every check throws on a wrong value; the process exits non-zero then.
 */
public class JdbcClient {
    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    static void expectState(String state, Runnable action) {
        try {
            action.run();
        } catch (RuntimeException e) {
            Throwable cause = e.getCause();
            if (cause instanceof SQLException && state.equals(((SQLException) cause).getSQLState())) return;
            throw e;
        }
        throw new AssertionError("expected SQLSTATE " + state);
    }

    interface SqlAction { void run() throws SQLException; }

    static Runnable sql(SqlAction a) {
        return () -> {
            try { a.run(); } catch (SQLException e) { throw new RuntimeException(e); }
        };
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://" + System.getenv("PGHOST") + ":" + System.getenv("PGPORT") + "/"
                + System.getenv("PGDATABASE");
        Properties props = new Properties();
        props.setProperty("user", System.getenv("PGUSER"));
        props.setProperty("password", System.getenv("PGPASSWORD"));
        try (Connection conn = DriverManager.getConnection(url, props)) {
            parameterStatus(conn);
            schema(conn);
            batches(conn);
            batchErrors(conn);
            generatedKeys(conn);
            fetchSize(conn);
            metadata(conn);
            errors(conn);
            cancel(conn);
            transactions(conn);
        }
        props.setProperty("autosave", "always");
        try (Connection conn = DriverManager.getConnection(url, props)) {
            autosave(conn);
        }
        System.out.println("jdbc: ok");
    }

    static void parameterStatus(Connection conn) throws SQLException {
        org.postgresql.PGConnection pg = conn.unwrap(org.postgresql.PGConnection.class);
        Map<String, String> status = pg.getParameterStatuses();
        check("16.6".equals(status.get("server_version")), "server_version " + status);
        check("UTF8".equals(status.get("client_encoding")), "client_encoding " + status);
        check(status.get("DateStyle").startsWith("ISO"), "DateStyle " + status);
        check("on".equals(status.get("integer_datetimes")), "integer_datetimes " + status);
        check("on".equals(status.get("standard_conforming_strings")), "scs " + status);
        check(status.containsKey("TimeZone"), "TimeZone " + status);
        check(conn.getMetaData().getDatabaseMajorVersion() == 16, "major version");
        try (Statement s = conn.createStatement()) {
            s.execute("SET application_name = 'jdbc-test'");
        }
        check("jdbc-test".equals(pg.getParameterStatus("application_name")), "application_name re-reported");
    }

    static void schema(Connection conn) throws SQLException {
        try (Statement s = conn.createStatement()) {
            s.execute("CREATE TABLE jt (id serial PRIMARY KEY, tagpath varchar(255) NOT NULL, "
                    + "v double precision, n numeric(10,2), t_stamp bigint, ts timestamp, ok boolean)");
            s.execute("CREATE INDEX jt_tagpath_idx ON jt (tagpath)");
        }
    }

    static void batches(Connection conn) throws SQLException {
        conn.setAutoCommit(false);
        try (PreparedStatement ps = conn.prepareStatement(
                "INSERT INTO jt (tagpath, v, n, t_stamp, ts, ok) VALUES (?, ?, ?, ?, ?, ?)")) {
            for (int i = 0; i < 300; i++) {
                ps.setString(1, "tag/" + i);
                ps.setDouble(2, i * 0.5);
                ps.setBigDecimal(3, new BigDecimal("1.25").add(BigDecimal.valueOf(i)));
                ps.setLong(4, 1700000000000L + i);
                ps.setTimestamp(5, Timestamp.valueOf("2024-03-04 05:06:07"));
                if (i % 2 == 0) ps.setBoolean(6, true); else ps.setNull(6, Types.BOOLEAN);
                ps.addBatch();
            }
            int[] counts = ps.executeBatch();
            check(counts.length == 300 && counts[0] == 1, "batch counts " + counts.length + " " + Arrays.toString(Arrays.copyOf(counts, 3)));
        }
        conn.commit();
        conn.setAutoCommit(true);
        // Executions past prepareThreshold use a named statement and binary transfer.
        try (PreparedStatement ps = conn.prepareStatement("SELECT v, n, ts, ok FROM jt WHERE t_stamp = ?")) {
            for (int i = 0; i < 8; i++) {
                ps.setLong(1, 1700000000000L + i);
                try (ResultSet rs = ps.executeQuery()) {
                    check(rs.next(), "row " + i);
                    check(rs.getDouble(1) == i * 0.5, "v " + i);
                    check(rs.getBigDecimal(2).compareTo(new BigDecimal("1.25").add(BigDecimal.valueOf(i))) == 0, "n " + i);
                    check(rs.getTimestamp(3).equals(Timestamp.valueOf("2024-03-04 05:06:07")), "ts " + rs.getTimestamp(3));
                    check((i % 2 == 0) == rs.getBoolean(4) && (i % 2 == 0) != rs.wasNull(), "ok " + i);
                    check(!rs.next(), "one row");
                }
            }
        }
        try (Statement s = conn.createStatement(); ResultSet rs = s.executeQuery("SELECT count(*) FROM jt")) {
            rs.next();
            check(rs.getLong(1) == 300, "count " + rs.getLong(1));
        }
    }

    static long count(Connection conn, String table) throws SQLException {
        try (Statement s = conn.createStatement(); ResultSet rs = s.executeQuery("SELECT count(*) FROM " + table)) {
            rs.next();
            return rs.getLong(1);
        }
    }

    /** Fills a batch of rows (tagid = i % 7, t_stamp = base + i); row `dup` repeats row 0's key. */
    static void fill(PreparedStatement ps, int rows, long base, int dup) throws SQLException {
        for (int i = 0; i < rows; i++) {
            ps.setInt(1, i == dup ? 0 : i % 7);
            ps.setLong(2, i == dup ? base : base + i);
            ps.setDouble(3, i * 1.5);
            ps.addBatch();
        }
    }

    static String batchState(PreparedStatement ps) {
        try {
            ps.executeBatch();
        } catch (BatchUpdateException e) {
            return e.getSQLState() + " " + e.getMessage();
        } catch (SQLException e) {
            return "not a batch error: " + e;
        }
        return "no error";
    }

    /** A batch fails and stores nothing as a whole, in a transaction and in autocommit mode. */
    static void batchErrors(Connection conn) throws SQLException {
        try (Statement s = conn.createStatement()) {
            s.execute("CREATE TABLE bt (tagid int NOT NULL, t_stamp bigint NOT NULL, v double precision, "
                    + "PRIMARY KEY (tagid, t_stamp))");
        }
        String insert = "INSERT INTO bt (tagid, t_stamp, v) VALUES (?, ?, ?)";
        conn.setAutoCommit(false);
        try (PreparedStatement ps = conn.prepareStatement(insert)) {
            fill(ps, 300, 1000, 200);
            String state = batchState(ps);
            check(state.startsWith("23505") && state.contains("(0, 1000)"), "duplicate in a batch: " + state);
            expectState("25P02", sql(() -> conn.createStatement().executeQuery("SELECT 1")));
            conn.rollback();
            check(count(conn, "bt") == 0, "failed batch stored rows");
            fill(ps, 300, 1000, -1);
            int[] counts = ps.executeBatch();
            check(counts.length == 300 && Arrays.stream(counts).allMatch(c -> c == 1), "counts " + Arrays.toString(counts));
            check(count(conn, "bt") == 300, "batch visible in its transaction");
            // A second batch repeating a key of the first, uncommitted one.
            fill(ps, 10, 1007, -1);
            check(batchState(ps).startsWith("23505"), "duplicate of an earlier batch of the transaction");
            conn.rollback();
            check(count(conn, "bt") == 0, "rolled back");
            fill(ps, 300, 1000, -1);
            ps.executeBatch();
            conn.commit();
        }
        conn.setAutoCommit(true);
        try (PreparedStatement ps = conn.prepareStatement(insert)) {
            // Autocommit: the batch is one implicit transaction up to its Sync, as in PostgreSQL.
            fill(ps, 50, 5000, 49);
            check(batchState(ps).startsWith("23505"), "autocommit duplicate");
            check(count(conn, "bt") == 300, "autocommit batch with a duplicate stored rows");
            fill(ps, 50, 1007, -1);
            check(batchState(ps).startsWith("23505"), "duplicate of a committed row");
            // A value the fast path cannot take goes through the planner, with its error.
            ps.setInt(1, 1);
            ps.setString(2, "not a number");
            ps.setDouble(3, 0);
            ps.addBatch();
            String bad = batchState(ps);
            check(bad.startsWith("22P02"), "bad value in a batch: " + bad);
            fill(ps, 50, 5000, -1);
            int[] counts = ps.executeBatch();
            check(counts.length == 50 && counts[49] == 1, "autocommit counts");
            ps.setInt(1, 1);
            ps.setNull(2, Types.BIGINT);
            ps.setDouble(3, 0);
            ps.addBatch();
            check(batchState(ps).startsWith("23502"), "NULL key in a batch");
        }
        check(count(conn, "bt") == 350, "rows after autocommit batches");
        try (Statement s = conn.createStatement(); ResultSet rs = s.executeQuery(
                "SELECT count(*), sum(v), min(t_stamp), max(t_stamp) FROM bt WHERE t_stamp >= 5000")) {
            rs.next();
            check(rs.getLong(1) == 50 && rs.getDouble(2) == 1.5 * 49 * 50 / 2 && rs.getLong(3) == 5000 && rs.getLong(4) == 5049,
                    "autocommit batch values");
        }
    }

    static List<Integer> ids(Connection conn, String table) throws SQLException {
        List<Integer> out = new ArrayList<>();
        try (Statement s = conn.createStatement(); ResultSet rs = s.executeQuery("SELECT id FROM " + table + " ORDER BY id")) {
            while (rs.next()) out.add(rs.getInt(1));
        }
        return out;
    }

    /** PostgreSQL's transaction state machine as PgJDBC drives it (extended protocol). */
    static void transactions(Connection conn) throws SQLException {
        try (Statement s = conn.createStatement()) {
            s.execute("CREATE TABLE jtx (id int PRIMARY KEY, n int)");
            s.execute("INSERT INTO jtx VALUES (1, 1), (100, 0)");
        }
        String insert = "INSERT INTO jtx VALUES (?, 1)";
        conn.setAutoCommit(false);
        try (PreparedStatement ins = conn.prepareStatement(insert);
             PreparedStatement divide = conn.prepareStatement("SELECT 1 / n FROM jtx WHERE id = ?")) {
            // An error while rows are computed fails the block: 25P02 until it ends.
            ins.setInt(1, 2);
            ins.executeUpdate();
            divide.setInt(1, 100);
            expectState("22012", sql(() -> divide.executeQuery().next()));
            ins.setInt(1, 3);
            expectState("25P02", sql(ins::executeUpdate));
            conn.rollback();
            check(ids(conn, "jtx").equals(List.of(1, 100)), "failed block stored rows: " + ids(conn, "jtx"));
            conn.commit();
            // Savepoints repair a failed block.
            ins.setInt(1, 4);
            ins.executeUpdate();
            Savepoint sp = conn.setSavepoint();
            ins.setInt(1, 5);
            ins.executeUpdate();
            ins.setInt(1, 4);
            expectState("23505", sql(ins::executeUpdate));
            ins.setInt(1, 6);
            expectState("25P02", sql(ins::executeUpdate));
            conn.rollback(sp);
            ins.setInt(1, 7);
            ins.executeUpdate();
            conn.commit();
            check(ids(conn, "jtx").equals(List.of(1, 4, 7, 100)), "savepoint: " + ids(conn, "jtx"));
        }
        conn.setAutoCommit(true);
        // Different statements in one batch are sent up to one Sync: all or nothing.
        try (Statement s = conn.createStatement()) {
            s.addBatch("INSERT INTO jtx VALUES (50, 1)");
            s.addBatch("UPDATE jtx SET n = n + 1 WHERE id = 1");
            s.addBatch("INSERT INTO jtx VALUES (1, 1)");
            s.addBatch("INSERT INTO jtx VALUES (51, 1)");
            try {
                s.executeBatch();
                throw new AssertionError("a batch with a duplicate key succeeded");
            } catch (BatchUpdateException e) {
                check("23505".equals(e.getSQLState()), "batch state " + e.getSQLState());
            }
        }
        check(ids(conn, "jtx").equals(List.of(1, 4, 7, 100)), "failed batch stored rows: " + ids(conn, "jtx"));
        try (Statement s = conn.createStatement(); ResultSet rs = s.executeQuery("SELECT n FROM jtx WHERE id = 1")) {
            check(rs.next() && rs.getInt(1) == 1, "failed batch's update stayed");
        }
    }

    /** autosave=always: PgJDBC sets a savepoint before each statement and rolls back to it on
     * an error, so the transaction goes on (DBeaver and others offer this). */
    static void autosave(Connection conn) throws SQLException {
        conn.setAutoCommit(false);
        try (PreparedStatement ins = conn.prepareStatement("INSERT INTO jtx VALUES (?, 1)")) {
            ins.setInt(1, 60);
            ins.executeUpdate();
            ins.setInt(1, 60);
            expectState("23505", sql(ins::executeUpdate));
            ins.setInt(1, 61);
            ins.executeUpdate();
            conn.commit();
        }
        conn.setAutoCommit(true);
        check(ids(conn, "jtx").equals(List.of(1, 4, 7, 60, 61, 100)), "autosave: " + ids(conn, "jtx"));
    }

    static void generatedKeys(Connection conn) throws SQLException {
        try (PreparedStatement ps = conn.prepareStatement(
                "INSERT INTO jt (tagpath) VALUES (?)", Statement.RETURN_GENERATED_KEYS)) {
            ps.setString(1, "new/tag");
            check(ps.executeUpdate() == 1, "insert");
            try (ResultSet keys = ps.getGeneratedKeys()) {
                check(keys.next() && keys.getInt("id") == 301, "generated key");
            }
        }
        try (Statement s = conn.createStatement(); ResultSet rs = s.executeQuery("SELECT lastval(), currval('jt_id_seq')")) {
            rs.next();
            check(rs.getLong(1) == 301 && rs.getLong(2) == 301, "lastval/currval");
        }
        try (Statement s = conn.createStatement()) {
            check(s.executeUpdate("UPDATE jt SET v = 99 WHERE tagpath = 'new/tag'") == 1, "update count");
        }
    }

    static void fetchSize(Connection conn) throws SQLException {
        conn.setAutoCommit(false);
        try (PreparedStatement ps = conn.prepareStatement("SELECT id FROM jt ORDER BY id")) {
            ps.setFetchSize(50);
            int n = 0;
            long last = 0;
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    check(rs.getLong(1) > last, "order");
                    last = rs.getLong(1);
                    n++;
                }
            }
            check(n == 301, "rows through portal " + n);
        }
        conn.commit();
        conn.setAutoCommit(true);
    }

    static void metadata(Connection conn) throws SQLException {
        DatabaseMetaData md = conn.getMetaData();
        try (ResultSet rs = md.getTables(null, "public", "jt", new String[] {"TABLE"})) {
            check(rs.next() && "jt".equals(rs.getString("TABLE_NAME")) && "TABLE".equals(rs.getString("TABLE_TYPE")), "getTables");
            check(!rs.next(), "one table");
        }
        try (ResultSet rs = md.getTables(null, "public", "nosuch", null)) {
            check(!rs.next(), "no such table");
        }
        List<String> names = new ArrayList<>();
        try (ResultSet rs = md.getColumns(null, "public", "jt", "%")) {
            while (rs.next()) {
                names.add(rs.getString("COLUMN_NAME"));
                if ("tagpath".equals(rs.getString("COLUMN_NAME"))) {
                    check("varchar".equals(rs.getString("TYPE_NAME")), "type name " + rs.getString("TYPE_NAME"));
                    check(rs.getInt("DATA_TYPE") == Types.VARCHAR, "data type");
                    check(rs.getInt("COLUMN_SIZE") == 255, "column size " + rs.getInt("COLUMN_SIZE"));
                    check("NO".equals(rs.getString("IS_NULLABLE")), "nullable");
                }
                if ("id".equals(rs.getString("COLUMN_NAME"))) {
                    check("serial".equals(rs.getString("TYPE_NAME")), "serial " + rs.getString("TYPE_NAME"));
                    check("YES".equals(rs.getString("IS_AUTOINCREMENT")), "autoincrement");
                }
                if ("n".equals(rs.getString("COLUMN_NAME"))) {
                    check(rs.getInt("COLUMN_SIZE") == 10 && rs.getInt("DECIMAL_DIGITS") == 2, "numeric(10,2)");
                }
            }
        }
        check(names.equals(Arrays.asList("id", "tagpath", "v", "n", "t_stamp", "ts", "ok")), "columns " + names);
        try (ResultSet rs = md.getPrimaryKeys(null, "public", "jt")) {
            check(rs.next() && "id".equals(rs.getString("COLUMN_NAME")) && "jt_pkey".equals(rs.getString("PK_NAME")), "pk");
            check(!rs.next(), "one pk column");
        }
        Set<String> indexes = new TreeSet<>();
        try (ResultSet rs = md.getIndexInfo(null, "public", "jt", false, false)) {
            while (rs.next()) indexes.add(rs.getString("INDEX_NAME") + ":" + rs.getString("COLUMN_NAME"));
        }
        check(indexes.equals(new TreeSet<>(Arrays.asList("jt_pkey:id", "jt_tagpath_idx:tagpath"))), "indexes " + indexes);
        try (Statement s = conn.createStatement(); ResultSet rs = s.executeQuery("SELECT tagpath, v FROM jt LIMIT 1")) {
            ResultSetMetaData rsmd = rs.getMetaData();
            check("jt".equals(rsmd.getTableName(1)), "result table name " + rsmd.getTableName(1));
            check(rsmd.getColumnType(1) == Types.VARCHAR, "result column type");
            check(rsmd.getColumnDisplaySize(1) == 255, "display size " + rsmd.getColumnDisplaySize(1));
        }
    }

    static void errors(Connection conn) {
        expectState("23505", sql(() -> conn.createStatement().execute("INSERT INTO jt (id, tagpath) VALUES (1, 'x')")));
        expectState("23502", sql(() -> conn.createStatement().execute("INSERT INTO jt (tagpath) VALUES (NULL)")));
        expectState("42P01", sql(() -> conn.createStatement().executeQuery("SELECT * FROM nosuch")));
        expectState("42703", sql(() -> conn.prepareStatement("SELECT nosuch FROM jt").executeQuery()));
        expectState("22001", sql(() -> {
            PreparedStatement ps = conn.prepareStatement("INSERT INTO jt (tagpath) VALUES (?)");
            ps.setString(1, "x".repeat(300));
            ps.executeUpdate();
        }));
    }

    static void cancel(Connection conn) throws Exception {
        Statement s = conn.createStatement();
        Thread canceller = new Thread(() -> {
            try { Thread.sleep(500); s.cancel(); } catch (Exception e) { throw new RuntimeException(e); }
        });
        canceller.start();
        expectState("57014", sql(() -> s.executeQuery("SELECT count(*) FROM generate_series(1, 20000000000)")));
        canceller.join();
        try (ResultSet rs = conn.createStatement().executeQuery("SELECT 1")) {
            check(rs.next() && rs.getInt(1) == 1, "usable after cancel");
        }
    }
}
